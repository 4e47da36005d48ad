"""MLServer 1.7.1 with its MLflow runtime as a benchmark peer, in its own venv (bench/.venv-mlserver).

Created once with pip, like bench/.venv-evidently: benchmark only, no dependency of mlaas. It pins the main
venv's mlflow, scikit-learn, XGBoost and LightGBM so both servers load the same model with the same code, and
``uvloop<0.22`` (without it MLServer's parallel workers die: "There is no current event loop").
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import common

VENV = common.ROOT / "bench" / ".venv-mlserver"
SAME_AS_MAIN = ("mlflow", "scikit-learn", "xgboost-cpu", "lightgbm", "skops", "pandas", "numpy")
PINS = ["mlserver==1.7.1", "mlserver-mlflow==1.7.1", "uvloop<0.22"]


def _main_versions() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in SAME_AS_MAIN:
        with contextlib.suppress(PackageNotFoundError):
            out.append(f"{name}=={version(name)}")
    return out


def ensure() -> tuple[Path | None, str]:
    """The venv's ``mlserver`` executable, or None and why it could not be installed (pip's last lines)."""
    executable = VENV / "bin" / "mlserver"
    python = VENV / "bin" / "python"
    probe = [str(python), "-c", "import mlserver, mlserver_mlflow, mlflow, sklearn, xgboost, lightgbm; "
             "print(mlserver.__version__)"]
    if executable.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return executable, "installed"
    pins = [*PINS, *_main_versions()]
    print(f"creating {VENV.relative_to(common.ROOT)} ({', '.join(pins)}) ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pins],
                       check=True, timeout=1800, capture_output=True, text=True)
        subprocess.run(probe, check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        return None, f"{' '.join(exc.cmd[:4])} … failed: {(exc.stderr or exc.stdout or '')[-1500:]}"
    except subprocess.TimeoutExpired as exc:
        return None, f"pip timed out after {exc.timeout} s"
    return executable, "installed"


def start(stack: Any, executable: Path, name: str, model_uri: str, workers: int) -> tuple[common.Process, str]:
    """Serve ``model_uri`` (downloaded to a local folder first) with ``mlserver start``; returns (process, url)."""
    import localstack
    import mlflow

    folder = stack.config.path("mlserver", name)
    local = mlflow.artifacts.download_artifacts(model_uri, dst_path=str(folder / "artifact"))
    http, grpc, metrics = localstack.free_ports(3)
    (folder / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": http, "grpc_port": grpc, "metrics_port": metrics,
        "parallel_workers": workers, "debug": False}))
    model = folder / "model"
    model.mkdir(parents=True, exist_ok=True)
    (model / "model-settings.json").write_text(json.dumps({
        "name": name, "implementation": "mlserver_mlflow.MLflowRuntime", "parameters": {"uri": local}}))
    tmp = folder / "tmp"
    tmp.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmp), "PATH": os.pathsep.join([str(executable.parent), os.environ["PATH"]])}
    env.pop("PYTHONPATH", None)  # its own venv only
    process = common.Process(f"mlserver-{name}", [str(executable), "start", str(folder)], env=env,
                             log=stack.config.path("logs", f"mlserver-{name}.log"), cwd=folder)
    url = f"http://127.0.0.1:{http}"
    try:
        process.wait_http(f"{url}/v2/models/{name}/ready", timeout=300, ok=lambda s: s == 200)
    except BaseException:
        process.stop()
        raise
    return process, url
