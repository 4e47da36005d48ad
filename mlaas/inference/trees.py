"""Tree models compiled to a vectorised numpy traversal: the head of a ``compiled.FastPredictor``.

Every tree of a model becomes a slice of one set of flat node arrays (feature, threshold, children, where a
missing value goes, leaf values); leaves point to themselves, so all trees of all rows advance together one
level per step, ``depth`` steps in all. The leaf values are then combined in scikit-learn's own order
(a forest adds its trees one by one from zero and divides by their count; gradient boosting adds its stages,
scaled, to the initial raw prediction), so the outputs match to the last bit or nearly: the load-time check
in ``compiled.verify`` holds them to ``compiled.RTOL`` all the same.

Covered: DecisionTree, RandomForest, ExtraTrees (classifiers with one output, regressors),
GradientBoosting (any loss with a constant initial estimator) and HistGradientBoosting (numeric splits; a
model with native categorical splits stays with scikit-learn).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor, ExtraTreeClassifier, ExtraTreeRegressor

from mlaas.inference.steps import Unsupported


@dataclass(frozen=True)
class Nodes:
    """The trees of a model as flat arrays; tree ``t`` starts at ``roots[t]``."""

    feature: np.ndarray  # intp; 0 at leaves
    threshold: np.ndarray  # float64; go left when x <= threshold (+inf at leaves)
    left: np.ndarray  # intp, absolute; a leaf is its own child
    right: np.ndarray
    missing_left: np.ndarray  # bool: where NaN goes
    value: np.ndarray  # float64, (nodes, outputs per tree)
    roots: np.ndarray  # intp, (trees,)
    depth: int

    def leaves(self, X: np.ndarray) -> np.ndarray:
        """The leaf index of every (row, tree)."""
        rows, width = X.shape
        flat = X.ravel()
        offsets = (np.arange(rows, dtype=np.intp) * width)[:, None]
        node = np.broadcast_to(self.roots, (rows, len(self.roots))).copy()
        for _ in range(self.depth):
            x = flat[offsets + self.feature[node]]
            go_left = np.where(np.isnan(x), self.missing_left[node], x <= self.threshold[node])
            node = np.where(go_left, self.left[node], self.right[node])
        return node


MAX_NODES = 4_000_000  # beyond, the copy would cost more memory than a request's speed is worth


def _join(parts: list[tuple[np.ndarray, ...]], depth: int) -> Nodes:
    """Nodes from per-tree (feature, threshold, left, right, missing_left, value, is_leaf), children relative."""
    if sum(len(p[0]) for p in parts) > MAX_NODES:
        raise Unsupported(f"a model of more than {MAX_NODES:,} tree nodes is not compiled")
    offsets = np.cumsum([0] + [len(p[0]) for p in parts[:-1]])
    columns: list[list[np.ndarray]] = [[] for _ in range(6)]
    for offset, (feature, threshold, left, right, missing, value, leaf) in zip(offsets, parts, strict=True):
        own = np.arange(len(feature), dtype=np.intp) + offset
        columns[0].append(np.where(leaf, 0, feature).astype(np.intp))
        columns[1].append(np.where(leaf, np.inf, threshold).astype(np.float64))
        columns[2].append(np.where(leaf, own, left.astype(np.intp) + offset))
        columns[3].append(np.where(leaf, own, right.astype(np.intp) + offset))
        columns[4].append(np.where(leaf, True, missing.astype(bool)))
        columns[5].append(np.asarray(value, dtype=np.float64).reshape(len(feature), -1))
    feature, threshold, left, right, missing, value = (np.concatenate(c) for c in columns)
    return Nodes(feature, threshold, left, right, missing, value, offsets.astype(np.intp), depth)


def _sklearn_tree(tree: Any) -> tuple[np.ndarray, ...]:
    t = tree.tree_
    if t.n_outputs != 1:
        raise Unsupported("a multi-output tree is not compiled")
    leaf = t.children_left < 0
    value = t.value[:, 0, :]
    return t.feature, t.threshold, t.children_left, t.children_right, t.missing_go_to_left, value, leaf


def _hist_tree(predictor: Any) -> tuple[np.ndarray, ...]:
    nodes = predictor.nodes
    if nodes["is_categorical"].any():
        raise Unsupported("HistGradientBoosting with categorical splits is not compiled")
    return (nodes["feature_idx"], nodes["num_threshold"], nodes["left"], nodes["right"],
            nodes["missing_go_to_left"], nodes["value"], nodes["is_leaf"].astype(bool))


@dataclass(frozen=True)
class TreeHead:
    """Leaves of every tree, combined into labels and probabilities (or values) as the model does."""

    nodes: Nodes
    combine: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]  # (rows, trees, outputs) -> answer
    width: int
    classes: np.ndarray | None
    has_proba: bool
    float32: bool  # scikit-learn's trees compare the input cast to float32
    allow_nan: bool

    def __call__(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        missing = np.isnan(X)
        if np.isinf(X).any() or (not self.allow_nan and missing.any()):
            raise Unsupported("the model's input holds values this model cannot take")
        if self.float32:
            X = X.astype(np.float32).astype(np.float64)
        leaves = self.nodes.leaves(X)
        return self.combine(self.nodes.value[leaves])


def _accepts_nan(final: Any, width: int) -> bool:
    """Whether the model itself predicts rows with missing values (else such rows are scikit-learn's to refuse)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            final.predict(np.full((1, width), np.nan))
    except ValueError:
        return False
    return True


def _head(final: Any, nodes: Nodes, combine: Callable[[np.ndarray], Any], float32: bool) -> TreeHead:
    width = int(final.n_features_in_)
    classes = getattr(final, "classes_", None)
    return TreeHead(nodes, combine, width, classes, classes is not None and hasattr(final, "predict_proba"),
                    float32, _accepts_nan(final, width))


def _forest(final: Any) -> TreeHead:
    trees = list(getattr(final, "estimators_", [final]))
    nodes = _join([_sklearn_tree(t) for t in trees], max(t.tree_.max_depth for t in trees))
    count = len(trees)
    classes = getattr(final, "classes_", None)
    if classes is not None and (np.ndim(classes) != 1 or nodes.value.shape[1] != len(classes)):
        raise Unsupported("a multi-output classifier is not compiled")

    def combine(values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        total = np.cumsum(values, axis=1)[:, -1] if count > 1 else values[:, 0]  # tree by tree, in order
        if count > 1:
            total = total / count
        if classes is None:
            return total[:, 0], None
        return classes.take(np.argmax(total, axis=1)), total

    return _head(final, nodes, combine, float32=True)


def _boosted(final: Any, parts: list[tuple[np.ndarray, ...]], depth: int, per_stage: int, start: np.ndarray,
             finish: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]], float32: bool) -> TreeHead:
    """Stages of ``per_stage`` trees each (one per raw output), added in order to ``start``."""
    nodes = _join(parts, depth)
    start = np.asarray(start, dtype=np.float64).reshape(1, 1, per_stage)

    def combine(values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        rows = values.shape[0]
        staged = values.reshape(rows, -1, per_stage)
        raw = np.cumsum(np.concatenate([np.broadcast_to(start, (rows, 1, per_stage)), staged], axis=1), axis=1)
        return finish(raw[:, -1, :])

    return _head(final, nodes, combine, float32)


def _gradient_boosting(final: Any) -> TreeHead:
    if not (isinstance(final.init_, str) or type(final.init_).__name__ in ("DummyClassifier", "DummyRegressor")):
        raise Unsupported("GradientBoosting with an initial estimator is not compiled")
    stages, per_stage = final.estimators_.shape
    start = final._raw_predict_init(np.zeros((1, final.n_features_in_)))
    trees = [final.estimators_[i, k] for i in range(stages) for k in range(per_stage)]
    scale = float(final.learning_rate)
    parts = [(*p[:5], scale * p[5], p[6]) for p in (_sklearn_tree(t) for t in trees)]
    depth = max(t.tree_.max_depth for t in trees)
    classes = getattr(final, "classes_", None)

    def finish(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if classes is None:
            return raw.ravel(), None
        raw = raw.ravel() if raw.shape[1] == 1 else raw  # as decision_function gives it
        encoded = (raw >= 0).astype(int) if raw.ndim == 1 else np.argmax(raw, axis=1)
        return classes[encoded], np.asarray(final._loss.predict_proba(raw), dtype=np.float64)

    return _boosted(final, parts, depth, per_stage, start, finish, float32=True)


def _hist_gradient_boosting(final: Any) -> TreeHead:
    if getattr(final, "_preprocessor", None) is not None:
        raise Unsupported("HistGradientBoosting with categorical features is not compiled")
    predictors = final._predictors
    per_stage = len(predictors[0]) if predictors else 1
    parts = [_hist_tree(p) for stage in predictors for p in stage]
    depth = max((int(p.nodes["depth"].max()) for stage in predictors for p in stage), default=0)
    classes = getattr(final, "classes_", None)

    def finish(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if classes is None:
            return np.asarray(final._loss.link.inverse(raw.ravel()), dtype=np.float64), None
        encoded = (raw.ravel() > 0).astype(int) if raw.shape[1] == 1 else np.argmax(raw, axis=1)
        return classes[encoded], np.asarray(final._loss.predict_proba(raw), dtype=np.float64)

    return _boosted(final, parts, depth, per_stage, final._baseline_prediction, finish, float32=False)


def thresholds(final: Any, per_feature: int = 4) -> dict[int, list[float]]:
    """Split thresholds per input feature, with their float32 neighbours: probe values for the load-time check."""
    if hasattr(final, "_predictors"):
        splits = [(p.nodes["feature_idx"][~p.nodes["is_leaf"].astype(bool)],
                   p.nodes["num_threshold"][~p.nodes["is_leaf"].astype(bool)])
                  for stage in final._predictors for p in stage]
    else:
        models = np.ravel(getattr(final, "estimators_", [final]))
        splits = [(t.tree_.feature[t.tree_.children_left >= 0], t.tree_.threshold[t.tree_.children_left >= 0])
                  for t in models if hasattr(t, "tree_")]
    out: dict[int, list[float]] = {}
    for features, values in splits:
        for f, v in zip(features.tolist(), values.tolist(), strict=True):
            pool = out.setdefault(int(f), [])
            if len(pool) < 3 * per_feature and np.isfinite(v):
                pool += [v, float(np.nextafter(np.float32(v), np.float32(np.inf))), v - 0.5]
    return out


HEADS: dict[type, Callable[[Any], TreeHead]] = {
    **{t: _forest for t in (DecisionTreeClassifier, DecisionTreeRegressor, ExtraTreeClassifier, ExtraTreeRegressor,
                            RandomForestClassifier, RandomForestRegressor, ExtraTreesClassifier,
                            ExtraTreesRegressor)},
    GradientBoostingClassifier: _gradient_boosting, GradientBoostingRegressor: _gradient_boosting,
    HistGradientBoostingClassifier: _hist_gradient_boosting, HistGradientBoostingRegressor: _hist_gradient_boosting,
}
