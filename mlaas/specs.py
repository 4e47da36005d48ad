"""Building blocks of the typed specs that services take: model names, version references, s3:// URIs.

Each capability package owns its specs (``training.specs``, ``drift.specs``, ``monitoring.specs``); the
API takes those same models as request bodies, so validation and the OpenAPI document come from them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema

MAX_VERSION = 2**31 - 1  # the registry stores versions as 32-bit integers
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,254}$")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\- ]*$"  # a registry name: never a URI, path or other reference


def model_name(**extra: Any) -> Any:
    """The constraints of a registered model name, as a pydantic field."""
    return Field(min_length=1, max_length=256, pattern=NAME_PATTERN,
                 description="Registered model name", examples=["titanic"], **extra)


# What uris.parse_uri accepts, as patterns the OpenAPI document states (schemathesis checks both agree). Keys are
# printable ASCII without backslashes, in segments that are neither empty, "." nor ".."; a bucket is an S3 name.
_CHAR = r"[\x20-\x2e\x30-\x5b\x5d-\x7e]"  # printable ASCII except "/" and the backslash
_NOT_DOT = r"[\x20-\x2d\x30-\x5b\x5d-\x7e]"  # ... and except "."
SEGMENT = rf"(?:{_NOT_DOT}{_CHAR}*|\.{_NOT_DOT}{_CHAR}*|\.\.{_CHAR}+)"
KEY_PATTERN = rf"{SEGMENT}(?:/{SEGMENT})*"
BUCKET_PATTERN = r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]"
S3_URI_PATTERN = rf"^s3://{BUCKET_PATTERN}/{KEY_PATTERN}$"
PREFIX_PATTERN = rf"^(?:{KEY_PATTERN}/?)?$"
PREFIX_URI_PATTERN = rf"^s3://{BUCKET_PATTERN}/{KEY_PATTERN}/?$"  # a folder: the live document sets its schemes
SCHEME_PATTERN = r"^(?:s3://|az://)"  # let through to uris.parse_uri, which knows the configured ones
MAX_URI_LENGTH = 1100  # s3://, a bucket of up to 63 and a key of up to 1024 bytes fit


def s3_uri(**extra: Any) -> Any:
    """The constraints of an s3:// URI, as a pydantic field: the scheme checked here, the rest by uris.parse_uri
    (whose messages name the problem); the document states the whole pattern, the live one the allowed buckets."""
    return Field(min_length=6, max_length=MAX_URI_LENGTH, pattern=SCHEME_PATTERN,
                 json_schema_extra={"pattern": S3_URI_PATTERN}, **extra)


S3UriText = Annotated[str, WithJsonSchema({"type": "string", "minLength": 6, "maxLength": MAX_URI_LENGTH,
                                            "pattern": S3_URI_PATTERN})]
"""An s3:// (or az://) URI where a field takes a URI or another form (a model's data, say): the document states
the pattern, uris.parse_uri checks it (a pydantic constraint in a union would word errors by union member)."""


def _version(value: Any) -> int | str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_VERSION:
        return value
    if isinstance(value, float) and value.is_integer() and 1 <= value <= MAX_VERSION:
        return int(value)  # JSON has one number type: 3.0 is the integer 3 (as JSON Schema's "integer" says)
    if isinstance(value, str) and value.isascii() and value.isdigit() and 1 <= int(value) <= MAX_VERSION:
        return int(value)
    if isinstance(value, str) and _ALIAS.match(value):
        return value
    raise ValueError("must be a version number (1 or more), 'latest' or an alias name")


VersionRef = Annotated[
    int | str | None,
    PlainValidator(_version),
    WithJsonSchema(
        {"anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_VERSION},
                   {"type": "string", "pattern": r"^(?:[1-9][0-9]{0,8}|[A-Za-z_][A-Za-z0-9_\-]{0,254})$"},
                   {"type": "null"}]}
    ),
]


class Doc(BaseModel):
    """Field docstrings become the fields' descriptions in the OpenAPI document."""

    model_config = ConfigDict(use_attribute_docstrings=True)


class Spec(Doc):
    """A request spec: unknown fields are refused, and a spec never changes once built."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)
