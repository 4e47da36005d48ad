"""Reading a model's logged runs back from MLflow (the console's drift and quality history)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from mlaas.adapters.registry import MlflowRegistry, _quote, translate_errors


@dataclass(frozen=True)
class RunRecord:
    """One finished run as the console reads it: when, its latest metric values, params and tags."""

    run_id: str
    name: str
    experiment_id: str
    started: datetime
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def experiment_name(registry: MlflowRegistry, model: str) -> str:
    """The experiment a model's runs are logged to (the same rule as ``MlflowRegistry.experiment_id``)."""
    return registry.settings.mlflow_experiment or f"mlaas/{model}"


def recent_runs(registry: MlflowRegistry, model: str, kinds: tuple[str, ...], *, limit: int) -> list[RunRecord]:
    """The newest ``limit`` finished runs of a model named ``{kind}_…``, oldest first (none: an empty list).

    With a shared experiment (MLAAS_MLFLOW_EXPERIMENT) only runs whose ``model`` param names the model count.
    """
    name = experiment_name(registry, model)
    with translate_errors(f"experiment {name!r}"):
        experiment = registry.client.get_experiment_by_name(name)
    if experiment is None:
        return []
    shared = f" AND params.model = '{_quote(model)}'" if registry.settings.mlflow_experiment else ""
    out: list[RunRecord] = []
    for kind in kinds:  # MLflow's filter language has no OR: one search per kind
        with translate_errors(f"runs of {model!r}"):
            found = registry.client.search_runs(
                [experiment.experiment_id], filter_string=f"attributes.run_name LIKE '{kind}_%' "
                                                          f"AND attributes.status = 'FINISHED'{shared}",
                max_results=limit, order_by=["attributes.start_time DESC"])
        out.extend(RunRecord(run_id=r.info.run_id, name=r.info.run_name or "", experiment_id=experiment.experiment_id,
                             started=datetime.fromtimestamp(r.info.start_time / 1000, UTC),
                             metrics=dict(r.data.metrics), params=dict(r.data.params), tags=dict(r.data.tags))
                   for r in found)
    out.sort(key=lambda r: r.started)
    return out[-limit:]
