"""A small Python client for the mlaas HTTP API."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

import mlaas
from mlaas.errors import code_of

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL_STATES = ("succeeded", "failed", "cancelled")
CONTENT_TYPES = {
    ".csv": "text/csv", ".parquet": "application/vnd.apache.parquet", ".pq": "application/vnd.apache.parquet",
    ".json": "application/json", ".yaml": "application/yaml", ".yml": "application/yaml",
}
_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")


class ApiError(Exception):
    """An error answer from the API: HTTP status, error code and message."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class ApiUnavailable(ConnectionError):
    """The API could not be reached, did not answer in time, or did not answer as an mlaas API."""


class Client:
    """The mlaas API over HTTP; each method returns the decoded JSON body of the answer."""

    def __init__(self, base_url: str = DEFAULT_URL, api_key: str | None = None, timeout: float = 30.0) -> None:
        if not re.match(r"^https?://[^/\s]+", base_url or ""):
            raise ValueError(f"the API URL must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"mlaas-client/{mlaas.__version__}"
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"

    # Jobs ---------------------------------------------------------------------------------------------------------

    def train(self, model: str, *, version: int | str | None = None, dataset: str | None = None,
              data_config: str | None = None, test_dataset: str | None = None, promote: bool = False,
              random_state: int | None = None, idempotency_key: str | None = None, **options: Any) -> dict[str, Any]:
        """Retrain a model version on a dataset; returns the accepted job (``job_id``, ``status_url``, ``state``)."""
        body = _given(model=model, version=version, dataset=dataset, data_config=data_config,
                      test_dataset=test_dataset, random_state=random_state, promote=promote or None, **options)
        return self._post_job("/train", body, idempotency_key)

    def evaluate(self, model: str, *, version: int | str | None = None, dataset: str | None = None,
                 data_config: str | None = None, compare_with: int | str | None = None, promote: bool = False,
                 idempotency_key: str | None = None, **options: Any) -> dict[str, Any]:
        """Evaluate a model version on a labelled test set; returns the accepted job."""
        body = _given(model=model, version=version, dataset=dataset, data_config=data_config,
                      compare_with=compare_with, promote=promote or None, **options)
        return self._post_job("/evaluate", body, idempotency_key)

    def batch_inference(self, model: str, dataset: str, *, version: int | str | None = None,
                        data_config: str | None = None, output: str | None = None, on_error: str | None = None,
                        idempotency_key: str | None = None, **options: Any) -> dict[str, Any]:
        """Score every row of a data set in storage into Parquet parts; returns the accepted job."""
        body = _given(model=model, version=version, dataset=dataset, data_config=data_config, output=output,
                      on_error=on_error, **options)
        return self._post_job("/batch-inference", body, idempotency_key)

    def drift(self, reference: str | dict[str, Any], current: str | dict[str, Any], *, data_config: str | None = None,
              idempotency_key: str | None = None, **options: Any) -> dict[str, Any]:
        """Compare two data sets (s3:// URIs or ``{"model", "version"}``); returns the accepted job."""
        body = _given(reference=reference, current=current, data_config=data_config, **options)
        return self._post_job("/data-drift", body, idempotency_key)

    def job(self, job_id: str) -> dict[str, Any]:
        """A job's state, progress, result or error."""
        return self._request("GET", f"/jobs/{quote(job_id, safe='')}")

    def jobs(self, *, job_type: str | None = None, state: str | None = None, limit: int | None = None,
             offset: int | None = None) -> dict[str, Any]:
        """Recent jobs, newest first: ``{jobs, total, limit, offset}``."""
        return self._request("GET", "/jobs", params=_given(type=job_type, state=state, limit=limit, offset=offset))

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job; returns the job."""
        return self._request("DELETE", f"/jobs/{quote(job_id, safe='')}")

    def wait(self, job_id: str, on_progress: Callable[[dict[str, Any]], None] | None = None,
             timeout: float | None = None, *, interval: float = 0.1, max_interval: float = 2.0,
             retries: int = 5) -> dict[str, Any]:
        """Poll a job until it succeeds, fails or is cancelled; returns the final job.

        ``on_progress`` gets the job after every poll. Polls start every ``interval`` seconds and slow to
        ``max_interval``; up to ``retries`` consecutive transient failures (unreachable, 502-504) are
        ridden out. Raises ``TimeoutError`` when ``timeout`` seconds pass first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay, failures, state = interval, 0, "unknown"
        while True:
            try:
                job = self.job(job_id)
            except (ApiUnavailable, ApiError) as exc:
                if isinstance(exc, ApiError) and exc.status not in (502, 503, 504):
                    raise
                failures += 1
                if failures > retries:
                    raise
            else:
                failures, state = 0, job["state"]
                if on_progress is not None:
                    on_progress(job)
                if state in TERMINAL_STATES:
                    return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {state} after {timeout:g} s")
            pause = min(0.5 * 2**failures, 10.0) if failures else delay
            if deadline is not None:
                pause = min(pause, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)
            if not failures:
                delay = min(delay * 1.5, max_interval)

    # Inference and models -----------------------------------------------------------------------------------------

    def predict(self, model: str, rows: list[dict[str, Any]], *, version: int | str | None = None) -> dict[str, Any]:
        """Score records (each with an optional ``id``): ``{model, version, predictions: [{id, prediction, ...}]}``."""
        return self._request("POST", "/inference", json=_given(model=model, version=version, data=rows))

    def models(self) -> dict[str, Any]:
        """Registered models with their production version: ``{models: [...]}``."""
        return self._request("GET", "/models")

    def model(self, name: str) -> dict[str, Any]:
        """A model's versions, aliases, evaluations and promotion history."""
        return self._request("GET", f"/models/{quote(name, safe='')}")

    def promote(self, name: str, version: int, *, require_better: bool = False) -> dict[str, Any]:
        """Make ``version`` the production version; returns the promotion record."""
        body = _given(version=int(version), require_better=require_better or None)
        return self._request("POST", f"/models/{quote(name, safe='')}/promote", json=body)

    def rollback(self, name: str) -> dict[str, Any]:
        """Point production back at the previous production version; returns the promotion record."""
        return self._request("POST", f"/models/{quote(name, safe='')}/rollback")

    def start_rollout(self, name: str, version: int, mode: str, *, weight: float | None = None,
                      guard: dict[str, Any] | None = None) -> dict[str, Any]:
        """Start (or change) a shadow or canary rollout of ``version``; returns its status."""
        body = _given(version=int(version), mode=mode, weight=weight, guard=guard)
        return self._request("POST", f"/models/{quote(name, safe='')}/rollout", json=body)

    def rollout(self, name: str) -> dict[str, Any]:
        """The model's rollout and how its candidate compares with production."""
        return self._request("GET", f"/models/{quote(name, safe='')}/rollout")

    def end_rollout(self, name: str) -> dict[str, Any]:
        """End the active rollout; returns its final status."""
        return self._request("DELETE", f"/models/{quote(name, safe='')}/rollout")

    def promote_rollout(self, name: str, *, require_better: bool = True) -> dict[str, Any]:
        """Promote the rollout's candidate (through the gate unless ``require_better`` is false) and end it."""
        return self._request("POST", f"/models/{quote(name, safe='')}/rollout/promote",
                             json={"require_better": require_better})

    # Datasets -----------------------------------------------------------------------------------------------------

    def upload_dataset(self, path: str | Path, key: str, overwrite: bool = False) -> dict[str, Any]:
        """Upload a local CSV, Parquet, YAML or JSON file to the datasets bucket: ``{uri, size, sha256}``.

        ``key`` is a key in the datasets bucket or an ``s3://bucket/key`` URI (the bucket part is dropped:
        uploads always go to the datasets bucket).
        """
        key = dataset_key(key)
        content_type = CONTENT_TYPES.get(Path(key).suffix.lower()) or CONTENT_TYPES.get(
            Path(path).suffix.lower(), "application/octet-stream")
        with open(path, "rb") as body:
            return self._request("PUT", f"/datasets/{quote(key, safe='/')}",
                                 params={"overwrite": "true"} if overwrite else None,
                                 data=body, headers={"Content-Type": content_type})

    def datasets(self, prefix: str | None = None) -> dict[str, Any]:
        """Objects in the datasets bucket: ``{datasets: [{uri, size, last_modified}]}``."""
        return self._request("GET", "/datasets", params=_given(prefix=prefix))

    def feedback(self, model: str, outcomes: list[dict[str, Any]] | None = None, *, dataset: str | None = None,
                 id_column: str | None = None, actual_column: str | None = None,
                 idempotency_key: str | None = None) -> dict[str, Any]:
        """Outcomes of served rows, ``[{"id", "actual"}]`` (``{accepted, batch}``), or a dataset of them (a job)."""
        body = _given(model=model, data=outcomes, dataset=dataset, id_column=id_column, actual_column=actual_column)
        return self._post_job("/feedback", body, idempotency_key)

    def performance(self, model: str, *, version: int | str | None = None, since: str | None = None,
                    until: str | None = None, window: int | None = None) -> dict[str, Any]:
        """Realized and estimated quality of a version's served predictions, overall and per window."""
        return self._request("GET", f"/models/{quote(model, safe='')}/performance",
                             params=_given(version=version, since=since, until=until, window=window))

    # Transport ----------------------------------------------------------------------------------------------------

    def _post_job(self, path: str, body: dict[str, Any], idempotency_key: str | None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._request("POST", path, json=body, headers=headers)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        url = self.base_url + path
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.Timeout:
            raise ApiUnavailable(f"the mlaas API at {self.base_url} did not answer within {self.timeout:g} s") from None
        except requests.ConnectionError as exc:
            found = _ERRNO_TEXT.search(str(exc))
            reason = found.group(1).strip() if found else "connection failed"
            raise ApiUnavailable(f"cannot reach the mlaas API at {self.base_url}: {reason}") from None
        except requests.RequestException as exc:
            raise ApiUnavailable(f"request to {url} failed: {exc}") from None
        if response.status_code >= 400:
            raise _error(response)
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("Content-Type") or "no content type"
            raise ApiUnavailable(f"{url} answered {response.status_code} with {kind}, not JSON: "
                                 f"is {self.base_url} an mlaas API?") from None


def dataset_key(key: str) -> str:
    """The key in the datasets bucket that ``key`` (a key or an ``s3://bucket/key`` URI) names."""
    if key.startswith(("s3://", "az://")):
        key = key[len("s3://"):].partition("/")[2]
    key = key.lstrip("/")
    if not key:
        raise ValueError("the dataset key is empty")
    return key


def _given(**fields: Any) -> dict[str, Any]:
    """The fields that were given (not None)."""
    return {name: value for name, value in fields.items() if value is not None}


def _error(response: requests.Response) -> ApiError:
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("code"), str) and body.get("message") is not None:
        details = body.get("details") if isinstance(body.get("details"), dict) else None
        return ApiError(status, body["code"], str(body["message"]), details)
    code = code_of(status)
    message = f"HTTP {status} {response.reason or ''} from {response.url}".replace("  ", " ")
    if response.headers.get("Content-Type", "").startswith("text/plain") and response.text.strip():
        message += ": " + " ".join(response.text.split())[:200]
    return ApiError(status, code, message)
