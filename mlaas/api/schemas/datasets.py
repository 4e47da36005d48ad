"""Datasets: paths, queries and what an upload or a listing returns."""

from __future__ import annotations

from pydantic import Field

from mlaas.api.schemas.common import Query
from mlaas.specs import KEY_PATTERN, PREFIX_PATTERN, Doc

# The suffixes uploads take, in any case (.csv, .CSV, ...).
_SUFFIXES = "(?:" + "|".join("".join(f"[{c}{c.upper()}]" for c in s) for s in ("csv", "parquet", "pq", "json", "yaml",
                                                                              "yml")) + ")"


class DatasetPath(Doc):
    key: str = Field(min_length=1, max_length=1024,  # checked by datasets.uploads, whose messages name the problem
                     json_schema_extra={"pattern": rf"^{KEY_PATTERN}\.{_SUFFIXES}$"})


class DatasetPutQuery(Query):
    overwrite: bool = False


class DatasetListQuery(Query):
    prefix: str = Field(default="", max_length=1024, json_schema_extra={"pattern": PREFIX_PATTERN})
    limit: int = Field(default=1000, ge=1, le=10_000)


class DatasetStored(Doc):
    uri: str
    size: int
    sha256: str


class DatasetInfo(Doc):
    uri: str
    size: int
    last_modified: str | None


class DatasetList(Doc):
    datasets: list[DatasetInfo]
