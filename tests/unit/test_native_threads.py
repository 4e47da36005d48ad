"""Each serving or training process sizes its native thread pools (OpenMP, BLAS) for its share of the cores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlaas.process import native_threads, usable_cores
from mlaas.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, sys
from mlaas.process import limit_native_threads
from mlaas.settings import Settings
import numpy, sklearn.ensemble  # BLAS and OpenMP loaded before the limit, as in a forked worker
from threadpoolctl import threadpool_info
threads = limit_native_threads(Settings.from_env(), int(sys.argv[1]))
import os
print(json.dumps({"threads": threads, "pools": {p["user_api"]: p["num_threads"] for p in threadpool_info()},
                  "env": os.environ["OMP_NUM_THREADS"]}))
"""


def probe(processes: int, **env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS") and k != "MLAAS_NATIVE_THREADS"}
    out = subprocess.run([sys.executable, "-c", PROBE, str(processes)], env={**clean, "PYTHONPATH": str(ROOT), **env},
                         cwd=ROOT, capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("processes", [1, 2, 64])
def test_the_pools_share_the_cores_among_the_processes(processes):
    result = probe(processes)
    expected = max(1, usable_cores() // processes)
    assert result["threads"] == expected
    assert result["env"] == str(expected)  # what a library loaded later (or a child) reads
    assert set(result["pools"]) >= {"openmp", "blas"}
    assert set(result["pools"].values()) == {expected}


def test_the_setting_overrides_the_share():
    assert native_threads(Settings(native_threads=3), 8) == 3
    assert native_threads(Settings(), 10_000) == 1
    result = probe(1, MLAAS_NATIVE_THREADS="1")
    assert result["threads"] == 1 and set(result["pools"].values()) == {1}
