"""The Kubernetes manifests (deploy/k8s): valid against the pinned Kubernetes schemas, offline, and wired up.

kubernetes-validate carries the JSON schemas of each Kubernetes release; KEDA's custom resources have no
schema there, so they are checked for what KEDA needs (a target that exists, a Redis list trigger).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from mlaas.adapters.queue import QUEUES
from mlaas.settings import PREFIX, Settings

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUBERNETES_VERSION = "1.33.0"  # the oldest release still supported upstream when this was written
NEW_QUEUES = {"housekeeping"}  # consumed before any task is routed there: harmless


def kustomization() -> dict[str, Any]:
    return dict(yaml.safe_load((K8S / "kustomization.yaml").read_text()))


@pytest.fixture(scope="module")
def documents() -> list[dict[str, Any]]:
    """Every resource the kustomization lists."""
    found = []
    for name in kustomization()["resources"]:
        found += [doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]
    return found


def of_kind(documents: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == kind}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(only)


def test_every_resource_file_is_listed_and_every_core_resource_is_valid(documents: list[dict[str, Any]]) -> None:
    assert {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"} == set(kustomization()["resources"])
    core = [doc for doc in documents if not doc["apiVersion"].startswith("keda.sh/")]
    assert len(core) >= 10
    for doc in core:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_refuses_a_broken_manifest(documents: list[dict[str, Any]]) -> None:
    broken = yaml.safe_load(yaml.safe_dump(of_kind(documents, "Deployment")["api"]))
    broken["spec"]["template"]["spec"]["containers"][0]["resources"]["limit"] = {"cpu": "1"}  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_one_autoscaled_worker_per_queue_on_its_redis_list(documents: list[dict[str, Any]]) -> None:
    deployments = of_kind(documents, "Deployment")
    scaled = of_kind(documents, "ScaledObject")
    auth = of_kind(documents, "TriggerAuthentication")
    queues = []
    for name, deployment in deployments.items():
        if not name.startswith("worker-"):
            continue
        argv = container(deployment)["command"]
        queue = argv[argv.index("-Q") + 1]
        assert name == f"worker-{queue}" and "," not in queue
        limit = container(deployment)["resources"]["limits"]["memory"]
        limit_kib = int(limit[:-2]) * {"Mi": 1024, "Gi": 1024**2}[limit[-2:]]
        assert 0 < int(argv[argv.index("--max-memory-per-child") + 1]) < limit_kib, name
        assert int(argv[argv.index("--max-tasks-per-child") + 1]) > 0
        (trigger,) = scaled[name]["spec"]["triggers"]
        assert scaled[name]["spec"]["scaleTargetRef"]["name"] == name
        assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == queue
        assert trigger["authenticationRef"]["name"] in auth
        queues.append(queue)
    assert set(QUEUES) <= set(queues) and set(queues) - set(QUEUES) <= NEW_QUEUES


def test_a_single_beat_never_doubled_by_a_rollout(documents: list[dict[str, Any]]) -> None:
    beats = [d for d in of_kind(documents, "Deployment").values() if "beat" in container(d).get("command", [])]
    assert len(beats) == 1
    (beat,) = beats
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"]["type"] == "Recreate"
    assert "beat" not in {name for name in of_kind(documents, "ScaledObject")}
    assert "beat" not in {h["spec"]["scaleTargetRef"]["name"] for h in of_kind(documents, "HorizontalPodAutoscaler")
                          .values()}


def test_api_scales_and_its_probes_keep_serving_when_mlflow_alone_is_down(documents: list[dict[str, Any]]) -> None:
    api = container(of_kind(documents, "Deployment")["api"])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert api[probe]["httpGet"]["path"] == "/health", probe  # /ready is 503 while MLflow is down
    hpa = of_kind(documents, "HorizontalPodAutoscaler")["api"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "api" and hpa["spec"]["minReplicas"] >= 2
    assert of_kind(documents, "Service")["api"]["spec"]["selector"] == {"app.kubernetes.io/name": "api"}


def test_every_pod_is_non_root_with_limits_and_reads_only_real_settings(documents: list[dict[str, Any]]) -> None:
    config = of_kind(documents, "ConfigMap")["mlaas-config"]["data"]
    secrets = {line.split("=", 1)[0] for line in (K8S / "secrets.env.example").read_text().splitlines()
               if line and not line.startswith("#")}
    assert kustomization()["secretGenerator"][0]["envs"] == ["secrets.env"]
    fields = {f.upper() for f in Settings.__dataclass_fields__}
    for key in [*config, *secrets]:
        assert not key.startswith(PREFIX) or key[len(PREFIX):] in fields, key
    settings = Settings.from_env({**config, **{key: "x" for key in secrets}})
    assert settings.mlflow_tracking_uri.startswith("http://mlflow.")
    for name, deployment in of_kind(documents, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert {"cpu", "memory"} <= set(container(deployment)["resources"]["limits"]), name
        refs = {ref.get("secretRef", {}).get("name") for ref in container(deployment)["envFrom"]}
        assert "mlaas-secrets" in refs, name
