"""What a batch scoring job is asked to do (the request), and what it runs with (the pinned job)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mlaas.specs import MAX_URI_LENGTH, PREFIX_URI_PATTERN, SCHEME_PATTERN, Spec, VersionRef, model_name, s3_uri

OnError = Literal["fail", "skip"]
MAX_CHUNK_ROWS = 1_000_000


class BatchSpec(Spec):
    """Score every row of a data set in blob storage with a registered model version."""

    model: str = model_name()
    version: VersionRef = Field(default=None, examples=[2, "latest"],
                                description="Integer version, 'latest', an alias, or omitted for production")
    dataset: str = s3_uri(examples=["s3://datasets/titanic/test.csv"])
    """The rows to score (CSV or Parquet), streamed: it need not fit in memory"""
    data_config: str | None = s3_uri(default=None)
    """Its index column gives each prediction's id; default: the version's data config, else the row number"""
    output: str | None = Field(default=None, min_length=6, max_length=MAX_URI_LENGTH, pattern=SCHEME_PATTERN,
                               json_schema_extra={"pattern": PREFIX_URI_PATTERN},
                               examples=["s3://drift/predictions/titanic-2026-12/"])
    """Where the Parquet parts go (a prefix in an allowed bucket); default s3://<drift bucket>/predictions/<job_id>/"""
    on_error: OnError = "fail"
    """fail: the job fails at the first bad row, naming its chunk and row; skip: bad rows go to errors parts"""
    chunk_rows: int | None = Field(default=None, ge=1, le=MAX_CHUNK_ROWS)
    """Rows per chunk (one part each); default MLAAS_BATCH_CHUNK_ROWS"""


class BatchJob(Spec):
    """A batch job as pinned at submission: a concrete version and chunk size."""

    model: str
    version: int
    dataset: str
    data_config: str | None = None
    output: str | None = None  # None: the default prefix of the job's id
    on_error: OnError = "fail"
    chunk_rows: int
