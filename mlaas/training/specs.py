"""What a training or evaluation job is asked to do (the request), and what it runs with (the pinned job)."""

from __future__ import annotations

from pydantic import Field

from mlaas.specs import Spec, VersionRef, model_name, s3_uri


class TrainSpec(Spec):
    """Retrain a registered model version on data in blob storage."""

    model: str = model_name()
    """Registered model name"""
    version: VersionRef = Field(
        default=None, description="Integer version, 'latest', an alias, or omitted for the production version",
        examples=[1, "latest", "prod"],
    )
    dataset: str | None = s3_uri(default=None, examples=["s3://datasets/titanic/train.csv"])
    """Training data (CSV or Parquet) in blob storage; default: the one recorded on the source version"""
    data_config: str | None = s3_uri(default=None, examples=["s3://datasets/titanic/data_config.yaml"])
    """Data config (YAML or JSON) in blob storage; default: the one recorded on the source version"""
    test_dataset: str | None = s3_uri(default=None)
    """Labelled test set; default: a stratified holdout of test_fraction"""
    drift_fraction: float = Field(default=0.1, gt=0, lt=0.5, description="Share of rows kept as drift baseline")
    test_fraction: float = Field(default=0.2, ge=0, lt=0.5, description="Share of rows held out when no test_dataset")
    random_state: int | None = Field(default=None, ge=0, le=2**32 - 1)
    """Seed of the splits"""
    promote: bool = Field(default=False, description="Promote when at least as good as production")


class TrainJob(Spec):
    """A training job as pinned at submission: a concrete source version and every data URI filled in."""

    model: str
    version: int
    dataset: str
    data_config: str
    test_dataset: str | None = None
    drift_fraction: float
    test_fraction: float
    random_state: int | None = None
    promote: bool = False


class EvaluateSpec(Spec):
    """Evaluate a model version on a labelled test set in blob storage."""

    model: str = model_name()
    version: VersionRef = Field(default=None, examples=[2, "latest"])
    dataset: str | None = s3_uri(default=None, examples=["s3://datasets/titanic/test.csv"])
    """Labelled test set; default: the version's test_dataset tag, then MLAAS_DEFAULT_TEST_DATASET"""
    data_config: str | None = s3_uri(default=None)
    """Default: the version's data_config tag"""
    compare_with: VersionRef = Field(default=None, description="Another version (or 'prod') on the same rows",
                                     examples=["prod"])
    promote: bool = Field(default=False, description="Promote when at least as good as production")


class EvaluateJob(Spec):
    """An evaluation job as pinned at submission: concrete versions, the test set and config filled in."""

    model: str
    version: int
    dataset: str
    data_config: str
    compare_with: int | None = None
    promote: bool = False
