"""Typed API models by resource: paths, queries and responses (request specs belong to the capability packages)."""

from mlaas.api.schemas.common import SECURITY, ErrorBody, IdempotencyHeader, Query
from mlaas.api.schemas.datasets import (
    DatasetInfo,
    DatasetList,
    DatasetListQuery,
    DatasetPath,
    DatasetPutQuery,
    DatasetStored,
)
from mlaas.api.schemas.health import Health, Readiness
from mlaas.api.schemas.inference import InferenceQuery, InferenceRequest, InferenceResponse, PredictionItem
from mlaas.api.schemas.jobs import (
    JobAccepted,
    JobError,
    JobList,
    JobListQuery,
    JobPath,
    JobProgress,
    JobStatus,
    JobTransition,
)
from mlaas.api.schemas.models import (
    ModelDetail,
    ModelList,
    ModelPath,
    ModelSummary,
    ModelVersionPath,
    PromoteRequest,
    PromotionRecord,
    VersionDetail,
)
from mlaas.api.schemas.monitors import Monitor, MonitorList, MonitorPath, MonitorRunAccepted

__all__ = [
    "SECURITY", "DatasetInfo", "DatasetList", "DatasetListQuery", "DatasetPath", "DatasetPutQuery", "DatasetStored",
    "ErrorBody", "Health", "IdempotencyHeader", "InferenceQuery", "InferenceRequest", "InferenceResponse",
    "JobAccepted", "JobError", "JobList", "JobListQuery", "JobPath", "JobProgress", "JobStatus", "JobTransition",
    "ModelDetail", "ModelList", "ModelPath", "ModelSummary", "ModelVersionPath", "Monitor", "MonitorList",
    "MonitorPath", "MonitorRunAccepted", "PredictionItem", "PromoteRequest", "PromotionRecord", "Query", "Readiness",
    "VersionDetail",
]
