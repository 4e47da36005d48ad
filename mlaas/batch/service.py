"""Batch scoring jobs: checked and pinned at submission, then streamed chunk by chunk into Parquet parts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlaas import jobs
from mlaas.batch import overlap, parts, reader, scoring
from mlaas.batch.specs import BatchJob, BatchSpec
from mlaas.context import Context
from mlaas.datasets.config import DataConfig
from mlaas.datasets.frames import checked_uri, read_config
from mlaas.datasets.uploads import readable_uri
from mlaas.errors import InvalidInput, TooLarge
from mlaas.inference.cache import ModelCache, ServedModel
from mlaas.uris import S3Uri

Progress = Callable[[str, int], None]
TEXT_KINDS = ("number", "integer", "string")  # CSV columns read as text: the model's conversion names bad values


def prepare(spec: BatchSpec, *, ctx: Context) -> BatchJob:
    """Resolve the version and check every URI and the row limit; 404/400/413 before anything is queued."""
    version = ctx.registry.resolve(spec.model, spec.version)
    dataset = readable_uri(spec.dataset, ctx=ctx, field="dataset")
    kind = reader.kind_of(dataset)
    if spec.data_config:
        readable_uri(spec.data_config, ctx=ctx, field="data_config")
        _index_column(ctx, spec.data_config)
    if spec.output is not None:
        parts.output_prefix(spec.output, "", settings=ctx.settings)
    if kind == "parquet":
        _check_rows(reader.parquet_rows(ctx.storage, dataset), dataset, ctx=ctx)
    else:
        reader.open_file(ctx.storage, dataset).close()  # a missing object is a 400 now, not a failed job
    return BatchJob(model=version.name, version=version.version, dataset=spec.dataset, data_config=spec.data_config,
                    output=spec.output, on_error=spec.on_error,
                    chunk_rows=spec.chunk_rows or ctx.settings.batch_chunk_rows)


def submit(spec: BatchSpec, *, ctx: Context, idempotency_key: str | None = None,
           request_id: str = "") -> dict[str, Any]:
    """Check and pin a batch request, then queue it as a job; the same idempotency key gives the same job."""
    job, _ = jobs.submit(prepare(spec, ctx=ctx), ctx=ctx, idempotency_key=idempotency_key, request_id=request_id)
    return job


def run(job: BatchJob, *, ctx: Context, job_id: str, progress: Progress,
        cache: ModelCache | None = None) -> dict[str, Any]:
    """The batch job: each chunk not yet written by an earlier attempt is scored and written as its part."""
    progress("load_model", 1)
    cache = cache or ModelCache(ctx)
    model = cache.get(cache.resolve(job.model, job.version))
    id_column = _index_column(ctx, job.data_config) if job.data_config else model.id_column
    dataset = checked_uri(job.dataset, settings=ctx.settings, field="dataset")
    prefix = parts.output_prefix(job.output, job_id, settings=ctx.settings)
    done = parts.written(ctx.storage, prefix, job_id)
    totals = {"rows": 0, "errors": 0, "files": 0, "error_files": 0, "resumed_chunks": 0, "read": 0}
    text = [c for c in model.columns or [] if model.column_types.get(c) in TEXT_KINDS]
    chunks = reader.read_chunks(ctx.storage, dataset, chunk_rows=job.chunk_rows, text_columns=text)
    # The next chunk is read and the previous part written while a chunk is scored. A part is written only
    # after its chunk's progress call (where cancelling and a lost lease stop the job) and the job ends only
    # once its last part is stored.
    with overlap.read_ahead(chunks) as ahead, overlap.Writer() as writer:
        for chunk in ahead:
            totals["read"] += len(chunk.frame)
            _check_rows(totals["read"], dataset, ctx=ctx)
            progress(f"chunk {chunk.index}", 2 + int(97 * chunk.fraction_read))  # cancel and lease checked here
            previous = done.get(chunk.index)
            if previous is None:
                previous, write = _score_chunk(ctx, job, job_id, model, chunk, prefix, id_column)
                writer.submit(write)
            else:
                totals["resumed_chunks"] += 1
            totals["rows"] += previous.rows
            totals["errors"] += previous.errors
            totals["files"] += 1
            totals["error_files"] += 1 if previous.errors else 0
    if not totals["read"]:
        raise InvalidInput(f"dataset: {dataset} holds no rows")
    return {"model": model.name, "version": model.version, "output": f"{prefix}/", "rows": totals["rows"],
            "files": totals["files"], "errors": totals["errors"], "error_files": totals["error_files"],
            "chunks": totals["files"], "resumed_chunks": totals["resumed_chunks"], "dataset": str(dataset)}


def _score_chunk(ctx: Context, job: BatchJob, job_id: str, model: ServedModel, chunk: reader.Chunk,
                 prefix: S3Uri, id_column: str | None) -> tuple[parts.Written, Callable[[], None]]:
    """Score one chunk; returns what it holds and the write of its errors part (if any), then of its predictions
    part: the latter marks it done."""
    where = f"dataset {job.dataset}, chunk {chunk.index}"
    ids = scoring.row_ids(chunk.frame, id_column, chunk.first_row)
    scored = scoring.score(chunk.frame, ids, model, skip=job.on_error == "skip", where=where,
                           first_row=chunk.first_row)
    meta = {"job": job_id, "chunk": str(chunk.index), "first-row": str(chunk.first_row),
            "rows": str(scored.predictions.num_rows), "errors": str(len(scored.bad))}
    errors = scored.errors(chunk.frame, ids, chunk.first_row)

    def write() -> None:
        if errors is not None:
            parts.put_table(ctx.storage, prefix.child(parts.ERRORS.format(chunk.index)), errors, metadata=meta)
        parts.put_table(ctx.storage, prefix.child(parts.PART.format(chunk.index)), scored.predictions, metadata=meta)

    return parts.Written(chunk.index, scored.predictions.num_rows, len(scored.bad)), write


def _index_column(ctx: Context, uri: str) -> str | None:
    """The first index column of a data config in storage (None when it lists none)."""
    source = checked_uri(uri, settings=ctx.settings, field="data_config")
    config = DataConfig.parse(read_config(ctx.storage, source), source=str(source))
    return config.index_columns[0] if config.index_columns else None


def _check_rows(rows: int, dataset: S3Uri, *, ctx: Context) -> None:
    limit = ctx.settings.batch_max_rows
    if rows > limit:
        raise TooLarge(f"dataset: {dataset} has more than the limit of {limit} rows per batch job "
                       "(MLAAS_BATCH_MAX_ROWS)")
