"""Property-based fuzzing of the whole API from its live OpenAPI document (schemathesis), on the real stack.

Every operation gets generated requests, valid ones and invalid ones, sent with the admin key. No answer
may be a 5xx, every status must be one the operation documents, every body must match its documented
schema, and invalid requests must be refused with a 4xx. Examples per operation and mode are bounded
(MLAAS_FUZZ_EXAMPLES, default 20) to keep the run to a minute or two.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.integration
MAX_EXAMPLES = int(os.environ.get("MLAAS_FUZZ_EXAMPLES", "20"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def api_schema(api):
    return schemathesis.openapi.from_url(api.base_url + "/openapi.json", headers=dict(api.session.headers),
                                         timeout=30)


def fuzz(operation: Any, mode: GenerationMode, api: Any, checks: list[Any]) -> str | None:
    """Run bounded examples of one operation; the first failure as text, None when all held."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        case.call_and_validate(base_url=api.base_url, headers=dict(api.session.headers), checks=checks, timeout=60)

    try:
        run()
    except Unsatisfiable:  # an operation without parameters or body has nothing to make invalid
        return None
    except Exception as exc:  # schemathesis reports failed checks as exceptions carrying the request
        return f"{operation.label} [{mode.value}]: {exc}"
    return None


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_every_operation_answers_as_documented(api_schema, api, mode):
    checks = CHECKS + ([negative_data_rejection] if mode == GenerationMode.NEGATIVE else [])
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20
    failures = [f for op in operations if (f := fuzz(op, mode, api, checks))]
    assert not failures, "\n\n".join(failures)


# Every check schemathesis has, stateful runs included, but negative_data_rejection, which runs in the test above (in
# the NEGATIVE mode). schemathesis.toml beside this file names the couplings a document cannot state.
EXCLUDED_CHECKS = "negative_data_rejection"
CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_schemathesis_with_the_other_checks_finds_nothing(api):
    """`schemathesis run --checks all` (less EXCLUDED_CHECKS) against the live document, its stateful phase too."""
    auth = [arg for name, value in api.session.headers.items() if name.lower() in ("authorization", "x-api-key")
            for arg in ("-H", f"{name}: {value}")]
    command = [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(CONFIG), "run",
               api.base_url + "/openapi.json",
               "--checks", "all", "--exclude-checks", EXCLUDED_CHECKS, "--max-examples", str(MAX_EXAMPLES),
               "--seed", "1", "--generation-deterministic",
               "--no-color", "--request-timeout", "60", *auth]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1500)
    report = "\n".join(line if len(line) < 400 else line[:400] + " [...]" for line in result.stdout.splitlines())
    assert result.returncode == 0, report[-15000:] + result.stderr[-2000:]
