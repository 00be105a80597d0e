"""Evaluation metrics, computed with scikit-learn over the whole evaluation set.

The trainer gathers the model's outputs for every evaluation sample, then calls
`compute_metrics(names, y_true=..., scores=..., probs=...)` once: averaging
per-batch values would be wrong for precision, recall, f1, roc_auc and r2.

* accuracy, precision, recall, f1: from predicted classes - the argmax of
  probs (else scores), or for a single column of probabilities a 0.5
  threshold.  precision/recall/f1 are macro averages with zero_division=0.
* roc_auc: from class PROBABILITIES, not predicted classes (the guide's
  compute_metrics passes argmax labels to roc_auc_score, which throws away the
  ranking ROC-AUC measures).  Binary: the positive-class column or the single
  sigmoid output; multi-class: one-vs-rest macro average over the classes
  present in y_true (a class absent from y_true has no ROC curve, so it is left
  out instead of crashing).  NaN when it is undefined (y_true has one class).
* mse, mae, r2: from scores, the model's regression output.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import SpecError, did_you_mean


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str                   # "classification" or "regression"
    greater_is_better: bool     # which way "best" goes, e.g. for the monitored metric
    description: str


METRICS = {m.name: m for m in (
    Metric("accuracy", "classification", True, "fraction of samples whose predicted class is right"),
    Metric("precision", "classification", True, "macro-averaged precision of the predicted classes"),
    Metric("recall", "classification", True, "macro-averaged recall of the predicted classes"),
    Metric("f1", "classification", True, "macro-averaged F1 score of the predicted classes"),
    Metric("roc_auc", "classification", True, "area under the ROC curve from class probabilities (one-vs-rest macro)"),
    Metric("mse", "regression", False, "mean squared error"),
    Metric("mae", "regression", False, "mean absolute error"),
    Metric("r2", "regression", True, "coefficient of determination R^2"),
)}


def resolve_metrics(names) -> list[str]:
    """The metric names, checked and without repeats; an unknown name raises SpecError."""
    names = [names] if isinstance(names, str) else list(names or [])
    problems, out = [], []
    for i, name in enumerate(names):
        key = str(name).lower()
        if key not in METRICS:
            problems.append((i, name))
        elif key not in out:
            out.append(key)
    if problems:
        i, name = problems[0]
        raise SpecError(f"unknown metric {name!r}", path=f"train.metrics[{i}]",
                        hint=did_you_mean(str(name), METRICS) or f"known metrics: {', '.join(METRICS)}")
    return out


def _array(x, what):
    if x is None:
        return None
    if hasattr(x, "detach"):          # a torch tensor, possibly on the GPU or in bfloat16
        x = x.detach().float().cpu() if x.is_floating_point() else x.detach().cpu()
        x = x.numpy()
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError(f"{what} must hold one value per sample, not a scalar")
    return x


def _labels(y_true) -> np.ndarray:
    y = y_true.reshape(len(y_true), -1)
    if y.shape[1] != 1:
        raise ValueError(f"classification y_true must be class indices of shape (N,), not {y_true.shape}")
    y = y[:, 0]
    if y.dtype.kind == "f":
        if not np.all(y == np.round(y)):
            raise ValueError("classification y_true holds fractional values; pass class indices")
        y = y.astype(np.int64)
    return y


def _columns(a: np.ndarray) -> np.ndarray:
    return a.reshape(len(a), -1)


def predicted_classes(scores=None, probs=None) -> np.ndarray:
    """argmax over classes, or a threshold for a single output column."""
    src = _columns(probs if probs is not None else scores)
    if src.shape[1] > 1:
        return src.argmax(1)
    # one column: probabilities cut at 0.5; raw scores in [0, 1] too, else they are logits, cut at 0
    cut = 0.5 if probs is not None or (src.min() >= 0 and src.max() <= 1) else 0.0
    return (src[:, 0] >= cut).astype(np.int64)


def class_probabilities(scores=None, probs=None) -> np.ndarray:
    """probs as given; else scores, taken as probabilities when they look like them, or squashed."""
    if probs is not None:
        return _columns(probs).astype(np.float64)
    s = _columns(scores).astype(np.float64)
    if s.shape[1] == 1:
        return s if s.min() >= 0 and s.max() <= 1 else 1 / (1 + np.exp(-s))
    if s.min() >= 0 and np.allclose(s.sum(1), 1, atol=1e-3):
        return s
    e = np.exp(s - s.max(1, keepdims=True))     # softmax of logits
    return e / e.sum(1, keepdims=True)


def roc_auc(y_true, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score
    if p.shape[1] <= 2:
        if not set(np.unique(y_true)) <= {0, 1}:
            raise ValueError(f"roc_auc: binary outputs but y_true holds labels {sorted(set(np.unique(y_true)))}")
        positive = p[:, -1]      # the single sigmoid output, or the class-1 column
        return float(roc_auc_score(y_true, positive)) if len(np.unique(y_true)) == 2 else math.nan
    if y_true.max() >= p.shape[1] or y_true.min() < 0:
        raise ValueError(f"roc_auc: y_true has labels outside 0..{p.shape[1] - 1}")
    # one-vs-rest per class present with both positives and negatives, then the macro mean
    scores = [roc_auc_score(y_true == c, p[:, c]) for c in np.unique(y_true) if 0 < (y_true == c).sum() < len(y_true)]
    return float(np.mean(scores)) if scores else math.nan


def compute_metrics(names, *, y_true, scores=None, probs=None) -> dict[str, float]:
    """name -> value for the whole evaluation set; see the module docstring."""
    from sklearn import metrics as skm
    names = resolve_metrics(names)
    y_true, scores, probs = _array(y_true, "y_true"), _array(scores, "scores"), _array(probs, "probs")
    out: dict[str, float] = {}
    if any(METRICS[n].kind == "classification" for n in names):
        if scores is None and probs is None:
            raise ValueError("classification metrics need scores or probs")
        y = _labels(y_true)
        pred = predicted_classes(scores, probs)
        macro = {"average": "macro", "zero_division": 0}
        for name in names:
            if name == "accuracy":
                out[name] = float(skm.accuracy_score(y, pred))
            elif name == "precision":
                out[name] = float(skm.precision_score(y, pred, **macro))
            elif name == "recall":
                out[name] = float(skm.recall_score(y, pred, **macro))
            elif name == "f1":
                out[name] = float(skm.f1_score(y, pred, **macro))
            elif name == "roc_auc":
                out[name] = roc_auc(y, class_probabilities(scores, probs))
    if any(METRICS[n].kind == "regression" for n in names):
        if scores is None:
            raise ValueError("regression metrics need scores (the model's output)")
        pred = _columns(scores).astype(np.float64)
        y = _columns(y_true).astype(np.float64)
        if y.shape != pred.shape:
            raise ValueError(f"regression targets {y_true.shape} and outputs {scores.shape} differ in shape")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")      # r2 on fewer than 2 samples is NaN: fine to report as such
            for name in names:
                if name == "mse":
                    out[name] = float(skm.mean_squared_error(y, pred))
                elif name == "mae":
                    out[name] = float(skm.mean_absolute_error(y, pred))
                elif name == "r2":
                    out[name] = float(skm.r2_score(y, pred)) if len(y) > 1 else math.nan
    return {name: out[name] for name in names}
