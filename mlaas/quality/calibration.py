"""A version's probability calibration for CBPE: fitted once, in a worker, on its labelled drift baseline."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from mlaas.context import Context
from mlaas.errors import InvalidInput, NotFound
from mlaas.monitoring.traffic import baseline_of
from mlaas.quality import estimate, store
from mlaas.training import scoring

log = logging.getLogger(__name__)


def _uri(ctx: Context, model: str, version: int) -> Any:
    return store.base(ctx, model).child(f"calibration/{version}.json")


def stored(ctx: Context, model: str, version: int) -> dict[str, Any] | None:
    """The calibration fitted for a version (None before the worker fitted one)."""
    return store.read_json(ctx, _uri(ctx, model, version))


def ensure(ctx: Context, model: str, version: int) -> dict[str, Any]:
    """The version's calibration, fitted now from its baseline if none is stored (a reason when it cannot be)."""
    found = stored(ctx, model, version)
    if found is not None:
        return found
    try:
        reference, config, _ = baseline_of(ctx, model, version)
        reference = reference.dropna(subset=[config.target_column])
        loaded = ctx.registry.load_model(ctx.registry.get_version(model, version))
        _, proba, classes = scoring.predict(loaded.estimator, reference[config.features], "classification")
    except (InvalidInput, NotFound) as exc:
        fitted: dict[str, Any] = {"calibrated": False, "reason": exc.message}
    else:
        if proba is None:
            fitted = {"calibrated": False, "reason": "the model gives no class probabilities"}
        else:
            fitted = estimate.fit_calibration(np.asarray(proba), [estimate.label(c) for c in classes],
                                              [estimate.label(v) for v in reference[config.target_column]])
    store.write_json(ctx, _uri(ctx, model, version), fitted)
    log.info("calibration of %s v%s: %s", model, version, fitted.get("reason") or f"{fitted.get('rows')} rows")
    return fitted
