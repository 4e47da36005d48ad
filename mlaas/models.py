"""The models API: what a registry user expects to see and do through mlaas."""

from __future__ import annotations

import json
from typing import Any

from mlaas.adapters.registry import STAGE_TAG, ModelVersion
from mlaas.context import Context
from mlaas.errors import Conflict, MlaasError, NotFound
from mlaas.inference.cache import ModelCache
from mlaas.training import promotion


def list_models(*, ctx: Context) -> list[dict[str, Any]]:
    """Registered models with their production and latest versions."""
    out = []
    for model in ctx.registry.list_models():
        versions = ctx.registry.list_versions(model["name"])
        prod = promotion.current_production(ctx, model["name"])
        out.append({"name": model["name"], "description": model["description"], "aliases": model["aliases"],
                    "production_version": prod.version if prod else None,
                    "latest_version": versions[0].version if versions else None, "versions": len(versions)})
    return out


def describe_model(name: str, *, ctx: Context) -> dict[str, Any]:
    """A model with every version's stage, aliases, evaluation, baseline and input schema."""
    model = ctx.registry.get_model(name)
    prod = promotion.current_production(ctx, name)
    return {
        "name": model["name"], "description": model["description"], "aliases": model["aliases"],
        "production_version": prod.version if prod else None,
        "promotions": promotion.promotion_history(ctx, name),
        "versions": [version_summary(v, ctx=ctx) for v in ctx.registry.list_versions(name)],
    }


def describe_version(name: str, number: int, *, ctx: Context, cache: ModelCache | None = None) -> dict[str, Any]:
    """One version in full, with whether this process can serve it (and why not)."""
    version = ctx.registry.get_version(name, number)
    out = version_summary(version, ctx=ctx)
    out["tags"] = version.tags
    out["source"] = version.source
    out["description"] = version.description
    if cache is not None:
        try:
            served = cache.get(version)
            out["servable"] = {"ok": True, "columns": served.columns, "classes": served.classes}
        except MlaasError as exc:
            out["servable"] = {"ok": False, "reason": exc.message}
    return out


def version_summary(version: ModelVersion, *, ctx: Context) -> dict[str, Any]:
    """A version's stage, aliases, latest evaluation, data URIs and input schema."""
    tags = version.tags
    evaluation = None
    if tags.get("eval.run_id"):
        try:
            scores = json.loads(tags.get("eval.metrics", "{}"))
        except ValueError:
            scores = {}
        evaluation = {"run_id": tags["eval.run_id"], "dataset": tags.get("eval.dataset"),
                      "dataset_sha256": tags.get("eval.dataset_sha256"), "metric": tags.get("eval.metric"),
                      "metrics": scores, "at": tags.get("eval.at")}
    try:
        schema = ctx.registry.input_schema(version)
    except MlaasError:
        schema = None
    return {
        "version": version.version, "stage": tags.get(STAGE_TAG), "aliases": list(version.aliases),
        "created_at": version.created_at.isoformat() if version.created_at else None, "run_id": version.run_id,
        "drift_data": tags.get("drift-data"), "dataset": tags.get("dataset"), "test_dataset": tags.get("test_dataset"),
        "evaluation": evaluation, "input_schema": schema,
    }


def promote(name: str, number: int, *, ctx: Context, require_better: bool, actor: str) -> dict[str, Any]:
    """Move the production alias to a version; with ``require_better`` its evaluation must pass the gate."""
    candidate = ctx.registry.get_version(name, number)
    current = promotion.current_production(ctx, name)
    if current is not None and current.version == number:
        raise Conflict(f"{name} v{number} is already the production version")
    reason = "promoted by request"
    if require_better and current is not None:
        decision = _gate_from_evaluations(name, candidate, current, ctx=ctx)
        if not decision.passed:
            raise Conflict(f"not promoted: {decision.reason}", details=decision.to_dict())
        reason = decision.reason
    return promotion.promote(ctx, name, number, actor=actor, reason=reason)


def rollback(name: str, *, ctx: Context, actor: str) -> dict[str, Any]:
    """Point production back at the version it pointed to before the last change."""
    history = promotion.promotion_history(ctx, name)
    current = promotion.current_production(ctx, name)
    if current is None:
        raise NotFound(f"model {name!r} has no production version to roll back")
    for entry in reversed(history):
        if entry.get("to") == current.version and entry.get("from") not in (None, current.version):
            previous = int(entry["from"])
            return promotion.promote(ctx, name, previous, actor=actor, reason=f"rollback from v{current.version}")
    raise Conflict(f"model {name!r} has no earlier production version recorded to roll back to")


def _gate_from_evaluations(name: str, candidate: ModelVersion, current: ModelVersion, *,
                           ctx: Context) -> promotion.GateDecision:
    cand_hash, cur_hash = candidate.tags.get("eval.dataset_sha256"), current.tags.get("eval.dataset_sha256")
    if not cand_hash or cand_hash != cur_hash:
        raise Conflict(f"require_better needs v{candidate.version} and production v{current.version} evaluated "
                       "on the same test set: run POST /evaluate with compare_with first")
    task = candidate.tags.get("task", "classification")
    metric = promotion.primary_metric(ctx, name, task)
    return promotion.decide(metric, json.loads(candidate.tags.get("eval.metrics", "{}")),
                            json.loads(current.tags.get("eval.metrics", "{}")), current.version)

