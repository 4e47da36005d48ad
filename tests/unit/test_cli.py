"""The ``mlaas`` command and its client against a canned HTTP server on 127.0.0.1 (no mlaas server)."""

from __future__ import annotations

import csv
import io
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from mlaas.client.api import ApiError, ApiUnavailable, Client
from mlaas.client.cli import ProgressBar, main


def error(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"code": code, "message": message, "status": status, "title": code}


def job(state: str, step: str, percent: int, **fields: Any) -> tuple[int, dict[str, Any]]:
    return 200, {"job_id": "j-1", "type": "train", "state": state, "progress": {"step": step, "percent": percent},
                 "params": {"model": "titanic", "version": 1}, "result": None, "error": None,
                 "created_at": "2026-11-02T10:00:00.123Z", **fields}


class FakeApi:
    """Answers (method, path) with canned responses, in order (the last one repeats); records each request."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[tuple[int, Any]]] = {}
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def handle_one(self) -> None:
                url = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.requests.append({"method": self.command, "path": url.path, "query": parse_qs(url.query),
                                      "headers": dict(self.headers), "body": body})
                answers = fake.routes.get((self.command, url.path)) or [error(404, "not_found", "no such route")]
                status, payload = answers.pop(0) if len(answers) > 1 else answers[0]
                raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                kind = "text/html" if isinstance(payload, bytes) else (
                    "application/problem+json" if status >= 400 else "application/json")
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        for verb in ("GET", "POST", "PUT", "DELETE"):
            setattr(Handler, f"do_{verb}", Handler.handle_one)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def on(self, method: str, path: str, *answers: tuple[int, Any]) -> None:
        self.routes[(method, path)] = list(answers)

    def sent(self, method: str, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == method and r["path"] == path]

    def json_sent(self, method: str, path: str) -> Any:
        return json.loads(self.sent(method, path)[-1]["body"])


@pytest.fixture
def api() -> Iterator[FakeApi]:
    fake = FakeApi()
    thread = threading.Thread(target=fake.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


@pytest.fixture
def cli(api, capsys, monkeypatch):
    """Run ``mlaas --url <fake> ARGS``; returns (exit code, stdout, stderr)."""
    monkeypatch.delenv("MLAAS_API_URL", raising=False)
    monkeypatch.delenv("MLAAS_API_KEY", raising=False)

    def run(*args: str, url: str | None = api.url) -> tuple[int, str, str]:
        code = main([*(["--url", url] if url else []), *args])
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return code, out, err

    return run


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


ACCEPTED = (202, {"job_id": "j-1", "status_url": "/jobs/j-1", "state": "queued", "model": "titanic", "version": 1})
RESULT = {"model": "titanic", "version": 2, "metrics": {"accuracy": 0.8}}


# Jobs --------------------------------------------------------------------------------------------------------------

def test_train_without_wait_prints_the_accepted_job(api, cli):
    api.on("POST", "/train", ACCEPTED)
    code, out, _ = cli("train", "--model", "titanic", "--dataset", "s3://datasets/t.csv",
                       "--data-config", "s3://datasets/c.yaml", "--version", "3", "--promote")
    assert code == 0
    assert json.loads(out)["job_id"] == "j-1"
    assert api.json_sent("POST", "/train") == {"model": "titanic", "version": 3, "dataset": "s3://datasets/t.csv",
                                               "data_config": "s3://datasets/c.yaml", "promote": True}
    assert not api.sent("GET", "/jobs/j-1")


def test_train_wait_shows_each_step_once_and_prints_the_result(api, cli):
    api.on("POST", "/train", ACCEPTED)
    api.on("GET", "/jobs/j-1", job("queued", "queued", 0), job("running", "download_data", 5),
           job("running", "fit", 50), job("running", "fit", 50), job("succeeded", "done", 100, result=RESULT))
    code, out, err = cli("train", "--model", "titanic", "--version", "latest", "--wait")
    assert code == 0, err
    assert json.loads(out) == RESULT
    assert api.json_sent("POST", "/train") == {"model": "titanic", "version": "latest"}
    lines = err.splitlines()
    assert lines[0] == "submitted train job j-1"
    assert lines[1:] == ["train j-1: queued queued 0%", "train j-1: running download_data 5%",
                         "train j-1: running fit 50%", "train j-1: succeeded done 100%"]


def test_a_failed_job_exits_1_with_its_code_and_message(api, cli):
    api.on("POST", "/evaluate", ACCEPTED)
    api.on("GET", "/jobs/j-1", job("running", "download_data", 10),
           job("failed", "download_data", 10, error={"code": "not_found", "message": "s3://datasets/x.csv missing"}))
    code, out, err = cli("evaluate", "--model", "titanic", "--compare-with", "prod", "--wait")
    assert code == 1
    assert out == ""
    assert err.splitlines()[-1] == "error: job j-1 failed: not_found: s3://datasets/x.csv missing"
    assert api.json_sent("POST", "/evaluate") == {"model": "titanic", "compare_with": "prod"}


def test_a_cancelled_job_exits_1(api, cli):
    api.on("GET", "/jobs/j-1", job("cancelled", "fit", 50))
    code, out, err = cli("jobs", "watch", "j-1")
    assert (code, out) == (1, "")
    assert err.splitlines()[-1] == "error: job j-1 was cancelled"


def test_watch_rides_out_a_transient_503(api, cli):
    api.on("GET", "/jobs/j-1", job("running", "fit", 50), error(503, "unavailable", "redis unavailable"),
           job("succeeded", "done", 100, result=RESULT))
    code, out, _ = cli("jobs", "watch", "j-1")
    assert code == 0 and json.loads(out) == RESULT
    assert len(api.sent("GET", "/jobs/j-1")) == 3


def test_watch_of_an_unknown_job_is_an_api_error(api, cli):
    api.on("GET", "/jobs/nope", error(404, "not_found", "job 'nope' does not exist"))
    code, out, err = cli("jobs", "watch", "nope")
    assert (code, out, err) == (3, "", "error: not_found: job 'nope' does not exist\n")


def test_drift_takes_uris_and_model_at_version(api, cli):
    api.on("POST", "/data-drift", ACCEPTED)
    code, _, _ = cli("drift", "titanic@2", "s3://datasets/new.csv", "--data-config", "s3://datasets/c.yaml")
    assert code == 0
    assert api.json_sent("POST", "/data-drift") == {"reference": {"model": "titanic", "version": 2},
                                                    "current": "s3://datasets/new.csv",
                                                    "data_config": "s3://datasets/c.yaml"}
    cli("drift", "s3://datasets/old.csv", "titanic@prod")
    assert api.json_sent("POST", "/data-drift")["current"] == {"model": "titanic", "version": "prod"}


def test_jobs_list_table_and_filters(api, cli):
    body = {"jobs": [job("failed", "fit", 50)[1]], "total": 7, "limit": 1, "offset": 0}
    api.on("GET", "/jobs", (200, body))
    code, out, err = cli("jobs", "list", "--type", "train", "--state", "failed", "--limit", "1")
    assert code == 0
    assert api.sent("GET", "/jobs")[-1]["query"] == {"type": ["train"], "state": ["failed"], "limit": ["1"]}
    header, row = out.splitlines()
    assert header.split() == ["JOB_ID", "TYPE", "STATE", "STEP", "MODEL", "CREATED"]
    assert row.split() == ["j-1", "train", "failed", "fit", "titanic@1", "2026-11-02T10:00:00"]
    assert "1 of 7 jobs" in err
    code, out, _ = cli("jobs", "list", "--json")
    assert json.loads(out) == body


def test_jobs_show_and_cancel(api, cli):
    api.on("GET", "/jobs/j-1", job("running", "fit", 50))
    api.on("DELETE", "/jobs/j-1", job("cancelled", "fit", 50),
           error(409, "conflict", "job j-1 is already cancelled"))
    code, out, _ = cli("jobs", "show", "j-1")
    assert code == 0 and json.loads(out)["progress"] == {"step": "fit", "percent": 50}
    code, out, _ = cli("jobs", "cancel", "j-1")
    assert code == 0 and json.loads(out)["state"] == "cancelled"
    code, out, err = cli("jobs", "cancel", "j-1")
    assert (code, out, err) == (3, "", "error: conflict: job j-1 is already cancelled\n")


# Progress bar ------------------------------------------------------------------------------------------------------

class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_redraws_one_line_on_a_terminal():
    screen = Terminal()
    bar = ProgressBar(screen)
    bar.update(job("running", "download_data", 5)[1])
    bar.update(job("running", "fit", 50)[1])
    bar.update(job("failed", "fit", 50)[1])
    bar.close()
    text = screen.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    frames = text.rstrip("\n").split("\r")[1:]
    assert len(frames) == 3
    assert frames[1].startswith("train j-1 [" + "#" * 12 + "-" * 12 + "]  50% fit")
    assert frames[2].rstrip().endswith("fit (failed)")
    assert len(frames[1]) >= len(frames[0])  # a longer earlier line is blanked out, not left behind


# Errors and exit codes ---------------------------------------------------------------------------------------------

def test_api_error_exits_3_with_code_and_message(api, cli):
    api.on("POST", "/train", error(404, "not_found", "model 'nope' does not exist"))
    code, out, err = cli("train", "--model", "nope")
    assert (code, out, err) == (3, "", "error: not_found: model 'nope' does not exist\n")


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_exit_4(api, cli, status):
    api.on("GET", "/models", error(status, "internal" if status == 500 else "unavailable", "mlflow unavailable"))
    code, _, err = cli("models", "list")
    assert code == 4 and err.startswith("error: ")


def test_an_unreachable_server_exits_4(cli):
    code, out, err = cli("models", "list", url=f"http://127.0.0.1:{closed_port()}")
    assert (code, out) == (4, "")
    assert err.startswith("error: unavailable: cannot reach the mlaas API at http://127.0.0.1:")
    assert err.count("\n") == 1


def test_a_server_that_is_not_mlaas_exits_4(api, cli):
    api.on("GET", "/models", (200, b"<html>hello</html>"))
    code, _, err = cli("models", "list")
    assert code == 4 and "not JSON" in err
    api.on("GET", "/models", (502, b"<html>Bad Gateway</html>"))
    code, _, err = cli("models", "list")
    assert code == 4 and err.startswith("error: unavailable: HTTP 502")


@pytest.mark.parametrize("args", [
    [], ["train"], ["jobs"], ["jobs", "list", "--state", "done"], ["drift", "titanic", "s3://datasets/a.csv"],
    ["models", "promote", "titanic", "two"], ["predict", "--model", "titanic", "/no/such/rows.csv"],
    ["datasets", "upload", "/no/such/file.csv", "x.csv"], ["--url", "localhost:8000", "models", "list"],
])
def test_usage_errors_exit_2(api, cli, args):
    code, out, err = cli(*args, url=None)
    assert code == 2 and out == ""
    assert "error" in err
    assert not api.requests


def test_help_exits_0(cli):
    code, out, _ = cli("--help", url=None)
    assert code == 0 and "datasets" in out and "Exit codes" in out


def test_url_and_key_come_from_the_environment_or_options_anywhere(api, cli, monkeypatch):
    api.on("GET", "/models", (200, {"models": []}))
    monkeypatch.setenv("MLAAS_API_URL", api.url)
    monkeypatch.setenv("MLAAS_API_KEY", "env-key")
    assert cli("models", "list", url=None)[0] == 0
    assert api.requests[-1]["headers"]["Authorization"] == "Bearer env-key"
    monkeypatch.setenv("MLAAS_API_URL", f"http://127.0.0.1:{closed_port()}")
    assert cli("models", "list", "--url", api.url, "--api-key", "opt-key", url=None)[0] == 0
    assert api.requests[-1]["headers"]["Authorization"] == "Bearer opt-key"


def test_unauthorized_exits_3_without_echoing_the_key(api, cli):
    api.on("GET", "/models", error(401, "unauthorized", "a valid API key is required"))
    code, out, err = cli("--api-key", "s3cr3t", "models", "list")
    assert (code, out, err) == (3, "", "error: unauthorized: a valid API key is required\n")


# Predictions -------------------------------------------------------------------------------------------------------

PREDICTED = {"model": "titanic", "version": 2, "ignored_columns": ["Name"], "predictions": [
    {"id": "p-1", "prediction": 0, "probabilities": {"0": 0.75, "1": 0.25}},
    {"id": "p-2", "prediction": 1, "probabilities": {"0": 0.5, "1": 0.5}},
]}


def test_predict_sends_typed_csv_rows_with_ids_and_prints_csv(api, cli, tmp_path):
    api.on("POST", "/inference", (200, PREDICTED))
    rows = tmp_path / "rows.csv"
    rows.write_text('id,Pclass,Age,Sex,Name,Fare\np-1,3,22,male,"Braund, Mr. Owen",7.25\n'
                    'p-2,1,,female,NA,71\n')
    code, out, err = cli("predict", "--model", "titanic", "--version", "2", str(rows))
    assert code == 0, err
    assert api.json_sent("POST", "/inference") == {"model": "titanic", "version": 2, "data": [
        {"id": "p-1", "Pclass": 3, "Age": 22.0, "Sex": "male", "Name": "Braund, Mr. Owen", "Fare": 7.25},
        {"id": "p-2", "Pclass": 1, "Age": None, "Sex": "female", "Name": None, "Fare": 71.0},
    ]}
    assert list(csv.reader(io.StringIO(out))) == [["id", "prediction", "probability_0", "probability_1"],
                                                  ["p-1", "0", "0.75", "0.25"], ["p-2", "1", "0.5", "0.5"]]
    assert "Name" in err


def test_predict_reads_json_records_and_writes_the_output_file(api, cli, tmp_path):
    api.on("POST", "/inference", (200, PREDICTED))
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([{"id": "p-1", "Age": 3}, {"id": "p-2", "Age": None}]))
    code, out, err = cli("predict", "--model", "titanic", str(rows), "--output", str(tmp_path / "out.json"))
    assert (code, out) == (0, "")
    assert api.json_sent("POST", "/inference") == {"model": "titanic",
                                                   "data": [{"id": "p-1", "Age": 3}, {"id": "p-2", "Age": None}]}
    assert json.loads((tmp_path / "out.json").read_text())["predictions"] == PREDICTED["predictions"]
    assert "wrote 2 predictions" in err
    cli("predict", "--model", "titanic", str(rows), "-o", str(tmp_path / "out.csv"))
    assert (tmp_path / "out.csv").read_text().splitlines()[1] == "p-1,0,0.75,0.25"


def test_predict_rejects_unreadable_rows_before_sending(api, cli, tmp_path):
    for name, text in (("bad.json", "{not json"), ("ragged.csv", "a,b\n1\n"), ("empty.csv", ""),
                       ("scalars.json", "[1, 2]")):
        (tmp_path / name).write_text(text)
        code, out, err = cli("predict", "--model", "titanic", str(tmp_path / name))
        assert code == 2 and out == "" and err.startswith(f"error: {tmp_path / name}: "), (name, err)
    assert not api.requests


def test_predict_validation_errors_are_api_errors(api, cli, tmp_path):
    api.on("POST", "/inference", error(400, "invalid_input", "row 0 (id 'p-1'), column 'Age': expected a number"))
    (tmp_path / "rows.csv").write_text("id,Age\np-1,old\n")
    code, _, err = cli("predict", "--model", "titanic", str(tmp_path / "rows.csv"))
    assert code == 3 and err == "error: invalid_input: row 0 (id 'p-1'), column 'Age': expected a number\n"


# Models and datasets -----------------------------------------------------------------------------------------------

def test_models_commands(api, cli):
    api.on("GET", "/models", (200, {"models": [{"name": "titanic", "description": "", "aliases": {"prod": 2},
                                                "production_version": 2, "latest_version": 3, "versions": 3}]}))
    api.on("GET", "/models/titanic", (200, {"name": "titanic", "versions": []}))
    record = {"at": "2026-11-02T10:00:00Z", "from": 2, "to": 3, "by": "cli", "reason": "manual"}
    api.on("POST", "/models/titanic/promote", (200, record))
    api.on("POST", "/models/titanic/rollback", (200, {**record, "from": 3, "to": 2}))
    code, out, _ = cli("models", "list")
    assert code == 0 and out.splitlines()[1].split() == ["titanic", "2", "3", "3", "prod=2"]
    assert json.loads(cli("models", "show", "titanic")[1])["name"] == "titanic"
    assert json.loads(cli("models", "promote", "titanic", "3", "--require-better")[1]) == record
    assert api.json_sent("POST", "/models/titanic/promote") == {"version": 3, "require_better": True}
    assert json.loads(cli("models", "rollback", "titanic")[1])["to"] == 2


def test_datasets_upload_puts_the_raw_file_under_its_key(api, cli, tmp_path):
    stored = {"uri": "s3://datasets/demo/train.csv", "size": 8, "sha256": "ab" * 32}
    api.on("PUT", "/datasets/demo/train.csv", (201, stored), error(409, "conflict", "it exists; add overwrite"))
    data = tmp_path / "train.csv"
    data.write_bytes(b"a,b\n1,2\n")
    code, out, err = cli("datasets", "upload", str(data), "s3://datasets/demo/train.csv")
    assert (code, err) == (0, "") and json.loads(out) == stored
    sent = api.sent("PUT", "/datasets/demo/train.csv")[-1]
    assert sent["body"] == b"a,b\n1,2\n" and sent["headers"]["Content-Type"] == "text/csv" and sent["query"] == {}
    code, out, err = cli("datasets", "upload", str(data), "demo/train.csv")
    assert (code, out, err) == (3, "", "error: conflict: it exists; add overwrite\n")
    cli("datasets", "upload", str(data), "demo/train.csv", "--overwrite")
    assert api.sent("PUT", "/datasets/demo/train.csv")[-1]["query"] == {"overwrite": ["true"]}


def test_datasets_upload_names_where_a_foreign_bucket_uri_went(api, cli, tmp_path):
    api.on("PUT", "/datasets/c.yaml", (201, {"uri": "s3://datasets/c.yaml", "size": 5, "sha256": "0" * 64}))
    (tmp_path / "c.yaml").write_text("a: 1\n")
    code, _, err = cli("datasets", "upload", str(tmp_path / "c.yaml"), "s3://mine/c.yaml")
    assert code == 0 and "stored at s3://datasets/c.yaml" in err
    assert api.sent("PUT", "/datasets/c.yaml")[-1]["headers"]["Content-Type"] == "application/yaml"


def test_datasets_list(api, cli):
    body = {"datasets": [{"uri": "s3://datasets/demo/train.csv", "size": 61194,
                          "last_modified": "2026-11-02T10:00:00.5+00:00"}]}
    api.on("GET", "/datasets", (200, body))
    code, out, _ = cli("datasets", "list", "--prefix", "demo/")
    assert code == 0 and api.sent("GET", "/datasets")[-1]["query"] == {"prefix": ["demo/"]}
    assert out.splitlines()[1].split() == ["s3://datasets/demo/train.csv", "61194", "2026-11-02T10:00:00"]


# The client on its own ---------------------------------------------------------------------------------------------

def test_client_raises_api_error_and_unavailable(api):
    api.on("GET", "/models/x", error(404, "not_found", "model 'x' does not exist"))
    with pytest.raises(ApiError) as caught:
        Client(api.url).model("x")
    assert (caught.value.status, caught.value.code, caught.value.message) == (404, "not_found",
                                                                              "model 'x' does not exist")
    with pytest.raises(ConnectionError):
        Client(f"http://127.0.0.1:{closed_port()}").models()
    assert issubclass(ApiUnavailable, ConnectionError)


def test_client_wait_times_out_and_reports_progress(api):
    api.on("GET", "/jobs/j-1", job("running", "fit", 50))
    seen: list[str] = []
    with pytest.raises(TimeoutError, match="still running"):
        Client(api.url).wait("j-1", on_progress=lambda j: seen.append(j["progress"]["step"]), timeout=0.3)
    assert seen and set(seen) == {"fit"}


def test_client_sends_an_idempotency_key(api):
    api.on("POST", "/train", ACCEPTED)
    Client(api.url).train("titanic", idempotency_key="nightly-2026-11-02")
    assert api.sent("POST", "/train")[-1]["headers"]["Idempotency-Key"] == "nightly-2026-11-02"


def test_every_request_the_client_makes_has_a_route_in_the_api(tmp_path, monkeypatch):
    """A CLI command whose route the API lacks fails here, not on a user's machine."""
    from werkzeug.exceptions import HTTPException

    from mlaas.api.app import create_app
    from mlaas.settings import Settings

    made: list[tuple[str, str]] = []
    monkeypatch.setattr(Client, "_request", lambda self, method, path, **kw: made.append((method, path)) or {})
    client = Client("http://127.0.0.1:9")
    local = tmp_path / "rows.csv"
    local.write_text("a\n1\n")
    client.train("titanic", dataset="s3://datasets/t.csv")
    client.evaluate("titanic", version=2)
    client.drift("s3://datasets/a.csv", "s3://datasets/b.csv")
    client.job("j-1")
    client.jobs(state="running")
    client.cancel("j-1")
    client.predict("titanic", [{"a": 1}])
    client.models()
    client.model("titanic")
    client.promote("titanic", 2)
    client.rollback("titanic")
    client.upload_dataset(local, "team/rows.csv")
    client.datasets(prefix="team/")
    assert len({path.split("/")[1] for _, path in made}) >= 7  # every resource the client knows
    routes = create_app(Settings()).url_map.bind("localhost")
    missing = []
    for method, path in made:
        try:
            routes.match(path, method=method)
        except HTTPException:
            missing.append(f"{method} {path}")
    assert missing == []
