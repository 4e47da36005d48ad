"""The ``mlaas`` command: jobs, predictions, models and datasets through the HTTP API.

Exit codes: 0 success; 1 a job that ended failed or cancelled; 2 usage errors; 3 an API error (4xx);
4 the API unreachable or failing (5xx); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import mlaas
from mlaas.client.api import DEFAULT_URL, TERMINAL_STATES, ApiError, ApiUnavailable, Client, dataset_key
from mlaas.client.rows import UsageError, cell, predictions_csv, read_rows

OK, JOB_FAILED, USAGE, API_ERROR, UNAVAILABLE, INTERRUPTED, SIGPIPE = 0, 1, 2, 3, 4, 130, 141


Handler = Callable[[Client, argparse.Namespace], int]


class ProgressBar:
    """A job's named step on a stream: one redrawn line on a terminal, one line per change otherwise."""

    WIDTH = 24

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.last: tuple[str, str] | None = None
        self.drawn = 0

    def update(self, job: dict[str, Any]) -> None:
        progress = job.get("progress") or {}
        step, state = str(progress.get("step") or ""), str(job.get("state") or "")
        percent = max(0, min(100, int(progress.get("percent") or 0)))
        label = f"{job.get('type') or 'job'} {str(job.get('job_id', ''))[:8]}"
        if self.tty:
            filled = round(self.WIDTH * percent / 100)
            line = f"{label} [{'#' * filled}{'-' * (self.WIDTH - filled)}] {percent:3d}% {step}"
            if state in TERMINAL_STATES and state != "succeeded":
                line += f" ({state})"
            line = line[: max(20, shutil.get_terminal_size().columns - 1)]
            self.stream.write("\r" + line + " " * max(0, self.drawn - len(line)))
            self.drawn = len(line)
        elif (state, step) != self.last:
            self.stream.write(f"{label}: {state} {step} {percent}%\n")
        self.last = (state, step)
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.drawn:
            self.stream.write("\n")
            self.stream.flush()
        self.drawn = 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``mlaas`` command; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed by argparse
        return exc.code if isinstance(exc.code, int) else USAGE
    try:
        client = Client(args.url or os.environ.get("MLAAS_API_URL") or DEFAULT_URL,
                        api_key=args.api_key or os.environ.get("MLAAS_API_KEY") or None,
                        timeout=args.timeout or 30.0)
    except ValueError as exc:
        _fail(f"--url: {exc}")
        return USAGE
    try:
        return int(args.handler(client, args))
    except ApiError as exc:
        _fail(f"{exc.code}: {exc.message}")
        return UNAVAILABLE if exc.status >= 500 else API_ERROR
    except ApiUnavailable as exc:
        _fail(f"unavailable: {exc}")
        return UNAVAILABLE
    except UsageError as exc:
        _fail(str(exc))
        return USAGE
    except KeyboardInterrupt:
        _fail("interrupted")
        return INTERRUPTED
    except BrokenPipeError:  # stdout closed early (`mlaas jobs list | head -1`): stop quietly, as cat does
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return SIGPIPE


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(prog="mlaas", description="Train, evaluate, watch and query models on mlaas.",
                                     epilog=__doc__.split("\n\n", 1)[1].strip() if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"mlaas {mlaas.__version__}")
    _global_options(parser, None)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(group: Any, name: str, handler: Handler | None, text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(name, parents=[common], help=text, description=text)
        if handler is not None:
            sub.set_defaults(handler=handler)
        return sub

    train = command(commands, "train", cmd_train, "Retrain a registered model version on a dataset")
    train.add_argument("--model", required=True)
    train.add_argument("--version", help="version number, 'latest' or an alias (default: production)")
    train.add_argument("--dataset", help="s3:// URI (default: the version's last training data)")
    train.add_argument("--data-config", help="s3:// URI of the data config (default: the version's)")
    train.add_argument("--test-dataset", help="s3:// URI of a labelled test set (default: a holdout split)")
    train.add_argument("--random-state", type=int)
    train.add_argument("--promote", action="store_true", help="promote when at least as good as production")
    train.add_argument("--wait", action="store_true", help="follow the job and print its result")

    evaluate = command(commands, "evaluate", cmd_evaluate, "Evaluate a model version on a labelled test set")
    evaluate.add_argument("--model", required=True)
    evaluate.add_argument("--version", help="version number, 'latest' or an alias (default: production)")
    evaluate.add_argument("--dataset", help="s3:// URI (default: the version's test set)")
    evaluate.add_argument("--data-config", help="s3:// URI of the data config (default: the version's)")
    evaluate.add_argument("--compare-with", help="another version (or 'prod') scored on the same rows")
    evaluate.add_argument("--promote", action="store_true", help="promote when at least as good as production")
    evaluate.add_argument("--wait", action="store_true", help="follow the job and print its result")

    drift = command(commands, "drift", cmd_drift, "Compare a current data set with a reference")
    drift.add_argument("reference", metavar="REF", type=data_ref,
                       help="s3:// URI, or MODEL@VERSION for that version's drift baseline")
    drift.add_argument("current", metavar="CUR", type=data_ref,
                       help="s3:// URI, or MODEL@VERSION for the rows that version has served")
    drift.add_argument("--data-config", help="s3:// URI of the data config naming the columns")
    drift.add_argument("--wait", action="store_true", help="follow the job and print its result")

    predict = command(commands, "predict", cmd_predict, "Score rows from a CSV or JSON file ('-': standard input)")
    predict.add_argument("rows", metavar="FILE")
    predict.add_argument("--model", required=True)
    predict.add_argument("--version", help="version number, 'latest' or an alias (default: production)")
    predict.add_argument("--output", "-o", help="write here instead of standard output")
    predict.add_argument("--format", choices=("csv", "json"), help="default: json for a .json --output, else csv")

    jobs = command(commands, "jobs", None, "List, show, follow and cancel jobs")
    jobs_commands = jobs.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = command(jobs_commands, "list", cmd_jobs_list, "Recent jobs, newest first")
    listing.add_argument("--type", choices=("train", "evaluate", "drift", "batch"))
    listing.add_argument("--state", choices=("queued", "running", "succeeded", "failed", "cancelled"))
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--json", action="store_true", help="print the API's JSON")
    for name, handler, text in (("show", cmd_jobs_show, "A job as JSON"),
                                ("watch", cmd_jobs_watch, "Follow a job to its end and print its result"),
                                ("cancel", cmd_jobs_cancel, "Cancel a queued or running job")):
        command(jobs_commands, name, handler, text).add_argument("job_id", metavar="ID")

    models = command(commands, "models", None, "List, show, promote and roll back models")
    models_commands = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    command(models_commands, "list", cmd_models_list, "Registered models").add_argument(
        "--json", action="store_true", help="print the API's JSON")
    command(models_commands, "show", cmd_models_show, "A model's versions as JSON").add_argument("name")
    promote = command(models_commands, "promote", cmd_models_promote, "Make a version the production version")
    promote.add_argument("name")
    promote.add_argument("version", type=int)
    promote.add_argument("--require-better", action="store_true", help="only when its evaluation is at least as good")
    command(models_commands, "rollback", cmd_models_rollback, "Production back to the previous version").add_argument(
        "name")

    datasets = command(commands, "datasets", None, "Upload and list datasets")
    datasets_commands = datasets.add_subparsers(dest="action", required=True, metavar="ACTION")
    upload = command(datasets_commands, "upload", cmd_datasets_upload, "Upload a file to the datasets bucket")
    upload.add_argument("file", metavar="FILE")
    upload.add_argument("key", metavar="KEY", help="key in the datasets bucket, or s3://bucket/key")
    upload.add_argument("--overwrite", action="store_true", help="replace an existing object")
    listing = command(datasets_commands, "list", cmd_datasets_list, "Objects in the datasets bucket")
    listing.add_argument("--prefix")
    listing.add_argument("--json", action="store_true", help="print the API's JSON")
    return parser


def _global_options(parser: argparse.ArgumentParser, default: Any) -> None:
    # Accepted before or after the command; on the command, a SUPPRESSed default leaves the global value alone.
    parser.add_argument("--url", default=default, help=f"API base URL (default: $MLAAS_API_URL or {DEFAULT_URL})")
    parser.add_argument("--api-key", default=default,
                        help="API key sent as a Bearer token (default: $MLAAS_API_KEY, which keeps it out of ps)")
    parser.add_argument("--timeout", type=float, default=default, help="seconds to wait for each answer (default 30)")


def data_ref(value: str) -> str | dict[str, Any]:
    """REF/CUR of ``mlaas drift``: an s3:// URI, or MODEL@VERSION as ``{"model", "version"}``."""
    if value.startswith(("s3://", "az://")):
        return value
    name, at, version = value.rpartition("@")
    if not at or not name or not version:
        raise argparse.ArgumentTypeError(f"expected s3://bucket/key, az://container/path or MODEL@VERSION, "
                                         f"got {value!r}")
    return {"model": name, "version": _version(version)}


def _version(value: str | None) -> int | str | None:
    return int(value) if value is not None and value.isdigit() else value


# Jobs --------------------------------------------------------------------------------------------------------------

def cmd_train(client: Client, args: argparse.Namespace) -> int:
    accepted = client.train(args.model, version=_version(args.version), dataset=args.dataset,
                            data_config=args.data_config, test_dataset=args.test_dataset,
                            random_state=args.random_state, promote=args.promote)
    return _submitted(client, "train", accepted, args.wait)


def cmd_evaluate(client: Client, args: argparse.Namespace) -> int:
    accepted = client.evaluate(args.model, version=_version(args.version), dataset=args.dataset,
                               data_config=args.data_config, compare_with=_version(args.compare_with),
                               promote=args.promote)
    return _submitted(client, "evaluate", accepted, args.wait)


def cmd_drift(client: Client, args: argparse.Namespace) -> int:
    accepted = client.drift(args.reference, args.current, data_config=args.data_config)
    return _submitted(client, "drift", accepted, args.wait)


def _submitted(client: Client, kind: str, accepted: dict[str, Any], wait: bool) -> int:
    if not wait:
        _print_json(accepted)
        return OK
    print(f"submitted {kind} job {accepted['job_id']}", file=sys.stderr)
    return _follow(client, accepted["job_id"])


def _follow(client: Client, job_id: str) -> int:
    """Show a job's progress until it ends; print its result (0) or its error (1)."""
    bar = ProgressBar(sys.stderr)
    try:
        job = client.wait(job_id, on_progress=bar.update)
    except KeyboardInterrupt:
        bar.close()
        _fail(f"interrupted: job {job_id} goes on; follow it with `mlaas jobs watch {job_id}` "
              f"or stop it with `mlaas jobs cancel {job_id}`")
        return INTERRUPTED
    except (ApiError, ApiUnavailable) as exc:
        bar.close()
        if isinstance(exc, ApiError) and exc.status < 500:
            raise
        print(f"job {job_id} was not followed to its end: `mlaas jobs watch {job_id}` resumes", file=sys.stderr)
        raise
    bar.close()
    if job["state"] == "succeeded":
        _print_json(job.get("result"))
        return OK
    if job["state"] == "cancelled":
        _fail(f"job {job_id} was cancelled")
        return JOB_FAILED
    error = job.get("error") or {}
    _fail(f"job {job_id} failed: {error.get('code', 'internal')}: {error.get('message', 'no message recorded')}")
    return JOB_FAILED


def cmd_jobs_list(client: Client, args: argparse.Namespace) -> int:
    body = client.jobs(job_type=args.type, state=args.state, limit=args.limit)
    if args.json:
        _print_json(body)
        return OK
    _print_table(["JOB_ID", "TYPE", "STATE", "STEP", "MODEL", "CREATED"], [
        [j["job_id"], j["type"], j["state"], (j.get("progress") or {}).get("step", ""),
         _model_label(j.get("params") or {}), (j.get("created_at") or "")[:19]]
        for j in body["jobs"]
    ])
    if body.get("total", 0) > len(body["jobs"]):
        print(f"{len(body['jobs'])} of {body['total']} jobs (--limit shows more)", file=sys.stderr)
    return OK


def _model_label(params: dict[str, Any]) -> str:
    if not params.get("model"):
        return ""
    return f"{params['model']}@{params['version']}" if params.get("version") is not None else str(params["model"])


def cmd_jobs_show(client: Client, args: argparse.Namespace) -> int:
    _print_json(client.job(args.job_id))
    return OK


def cmd_jobs_watch(client: Client, args: argparse.Namespace) -> int:
    return _follow(client, args.job_id)


def cmd_jobs_cancel(client: Client, args: argparse.Namespace) -> int:
    _print_json(client.cancel(args.job_id))
    return OK


# Predictions -------------------------------------------------------------------------------------------------------

def cmd_predict(client: Client, args: argparse.Namespace) -> int:
    rows = read_rows(args.rows)
    body = client.predict(args.model, rows, version=_version(args.version))
    fmt = args.format or ("json" if args.output and args.output.lower().endswith(".json") else "csv")
    text = json.dumps(body, indent=2) + "\n" if fmt == "json" else predictions_csv(body.get("predictions") or [])
    if body.get("ignored_columns"):
        print(f"note: {body['model']} v{body['version']} does not use column(s) {', '.join(body['ignored_columns'])}",
              file=sys.stderr)
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{args.output}: {exc.strerror or exc}") from None
        print(f"wrote {len(body.get('predictions') or [])} predictions of {body['model']} v{body['version']} "
              f"to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return OK


# Models and datasets -----------------------------------------------------------------------------------------------

def cmd_models_list(client: Client, args: argparse.Namespace) -> int:
    body = client.models()
    if args.json:
        _print_json(body)
        return OK
    _print_table(["NAME", "PROD", "LATEST", "VERSIONS", "ALIASES"], [
        [m["name"], cell(m.get("production_version")), cell(m.get("latest_version")), cell(m.get("versions")),
         ",".join(f"{a}={v}" for a, v in sorted((m.get("aliases") or {}).items()))]
        for m in body["models"]
    ])
    return OK


def cmd_models_show(client: Client, args: argparse.Namespace) -> int:
    _print_json(client.model(args.name))
    return OK


def cmd_models_promote(client: Client, args: argparse.Namespace) -> int:
    _print_json(client.promote(args.name, args.version, require_better=args.require_better))
    return OK


def cmd_models_rollback(client: Client, args: argparse.Namespace) -> int:
    _print_json(client.rollback(args.name))
    return OK


def cmd_datasets_upload(client: Client, args: argparse.Namespace) -> int:
    if not Path(args.file).is_file():
        raise UsageError(f"{args.file}: no such file")
    try:
        key = dataset_key(args.key)
    except ValueError as exc:
        raise UsageError(f"{args.key}: {exc}") from None
    stored = client.upload_dataset(args.file, key, overwrite=args.overwrite)
    if args.key.startswith(("s3://", "az://")) and stored.get("uri") != args.key:
        print(f"note: stored at {stored.get('uri')} (uploads go to the datasets bucket)", file=sys.stderr)
    _print_json(stored)
    return OK


def cmd_datasets_list(client: Client, args: argparse.Namespace) -> int:
    body = client.datasets(prefix=args.prefix)
    if args.json:
        _print_json(body)
        return OK
    _print_table(["URI", "SIZE", "LAST_MODIFIED"], [
        [d["uri"], cell(d.get("size")), (d.get("last_modified") or "")[:19]] for d in body["datasets"]
    ])
    return OK


# Output ------------------------------------------------------------------------------------------------------------

def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
