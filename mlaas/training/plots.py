"""Evaluation pictures as PNG bytes: confusion matrix, ROC curve, residuals."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def confusion_matrix_png(labels: list[str], matrix: list[list[int]], title: str) -> bytes:
    """A labelled confusion matrix with counts in the cells."""
    data = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * len(labels), 1.0 + 0.8 * len(labels)))
    image = ax.imshow(data, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 4 else 0)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title)
    threshold = data.max() / 2 if data.size else 0
    for (i, j), value in np.ndenumerate(data):
        ax.text(j, i, str(value), ha="center", va="center", color="white" if value > threshold else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _png(fig)


def roc_png(y_true: Any, proba: np.ndarray, classes: list[Any], title: str) -> bytes:
    """ROC curve (one-vs-rest per class when there are more than two)."""
    fig, ax = plt.subplots(figsize=(5, 4.5))
    y = np.asarray(y_true)
    targets = [classes[1]] if len(classes) == 2 else classes
    for cls in targets:
        column = classes.index(cls)
        if len(np.unique(y == cls)) < 2:
            continue
        fpr, tpr, _ = roc_curve(y == cls, proba[:, column])
        ax.plot(fpr, tpr, label=f"class {cls}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.legend(loc="lower right")
    return _png(fig)


def residuals_png(y_true: Any, y_pred: Any, title: str) -> bytes:
    """Residuals against predictions."""
    predicted = np.asarray(y_pred, dtype=float)
    residuals = np.asarray(y_true, dtype=float) - predicted
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.scatter(predicted, residuals, s=8, alpha=0.6)
    ax.axhline(0, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual - predicted")
    ax.set_title(title)
    return _png(fig)
