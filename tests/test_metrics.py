"""specbuild.training.metrics: whole-set metrics through scikit-learn, ROC-AUC from probabilities."""
import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from specbuild import registry
from specbuild.errors import SpecError
from specbuild.training.metrics import METRICS, compute_metrics, resolve_metrics


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.fixture
def multiclass():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    logits = rng.normal(size=(200, 4)) + 1.5 * np.eye(4)[y]
    return y, logits, softmax(logits)


def guide_compute_metrics(y_true, y_pred):
    """The seed guide's version, whose ROC-AUC is computed from argmax labels."""
    y_pred = y_pred.argmax(dim=1)
    return skm.roc_auc_score(y_true, y_pred, average="macro", multi_class="ovo")


def test_names_match_the_registry():
    assert tuple(METRICS) == registry.METRIC_NAMES


def test_resolve_metrics():
    assert resolve_metrics(["accuracy", "F1", "accuracy"]) == ["accuracy", "f1"]
    with pytest.raises(SpecError) as e:
        resolve_metrics(["accuracy", "acuracy"])
    assert e.value.path == "train.metrics[1]" and "did you mean 'accuracy'" in e.value.hint


def test_classification_metrics_match_sklearn(multiclass):
    y, logits, probs = multiclass
    got = compute_metrics(["accuracy", "precision", "recall", "f1"], y_true=torch.from_numpy(y),
                          scores=torch.from_numpy(logits))
    pred = logits.argmax(1)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred, average="macro", zero_division=0))
    assert got["recall"] == pytest.approx(skm.recall_score(y, pred, average="macro", zero_division=0))
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))
    assert all(isinstance(v, float) for v in got.values())


def test_roc_auc_uses_probabilities_not_labels(multiclass):
    y, logits, probs = multiclass
    ours = compute_metrics(["roc_auc"], y_true=y, probs=probs)["roc_auc"]
    assert ours == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    # logits alone give the same value: they are softmaxed
    assert compute_metrics(["roc_auc"], y_true=y, scores=logits)["roc_auc"] == pytest.approx(ours)
    # the guide's argmax version cannot even score multi-class outputs ...
    with pytest.raises(ValueError):
        guide_compute_metrics(torch.from_numpy(y), torch.from_numpy(probs))
    # ... and on a binary problem it scores hard labels, which loses the ranking
    yb = (y > 1).astype(int)
    pb = np.stack([1 - probs[:, 2:].sum(1), probs[:, 2:].sum(1)], 1)
    guide = skm.roc_auc_score(yb, pb.argmax(1))
    ours_b = compute_metrics(["roc_auc"], y_true=yb, probs=pb)["roc_auc"]
    assert ours_b == pytest.approx(skm.roc_auc_score(yb, pb[:, 1])) and abs(ours_b - guide) > 0.01


def test_binary_single_sigmoid_column():
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([[0.1], [0.6], [0.7], [0.4], [0.9], [0.2]])
    got = compute_metrics(["accuracy", "roc_auc"], y_true=y, probs=p)
    assert got["accuracy"] == pytest.approx(4 / 6)              # threshold 0.5
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p[:, 0]))
    # logits in one column: thresholded at 0 and squashed for the AUC, same ranking
    logit = np.log(p / (1 - p))
    assert compute_metrics(["accuracy", "roc_auc"], y_true=y, scores=logit) == pytest.approx(got)


def test_roc_auc_with_classes_absent_from_y_true(multiclass):
    y, _, probs = multiclass
    keep = y < 2                      # classes 2 and 3 never occur
    got = compute_metrics(["roc_auc", "f1"], y_true=y[keep], probs=probs[keep])
    expected = np.mean([skm.roc_auc_score(y[keep] == c, probs[keep][:, c]) for c in (0, 1)])
    assert got["roc_auc"] == pytest.approx(expected)
    assert math.isnan(compute_metrics(["roc_auc"], y_true=np.zeros(5, int), probs=probs[:5])["roc_auc"])


def test_regression_metrics_match_sklearn():
    rng = np.random.default_rng(1)
    y = rng.normal(size=50)
    out = (y + rng.normal(scale=0.3, size=50)).reshape(50, 1)        # a Linear(..., 1) head's shape
    got = compute_metrics(["mse", "mae", "r2"], y_true=torch.tensor(y), scores=torch.tensor(out))
    assert got["mse"] == pytest.approx(skm.mean_squared_error(y, out[:, 0]))
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, out[:, 0]))
    assert got["r2"] == pytest.approx(skm.r2_score(y, out[:, 0]))
    assert METRICS["mse"].greater_is_better is False and METRICS["r2"].greater_is_better is True


def test_missing_outputs_are_reported():
    with pytest.raises(ValueError, match="scores or probs"):
        compute_metrics(["accuracy"], y_true=[0, 1])
    with pytest.raises(ValueError, match="differ in shape"):
        compute_metrics(["mse"], y_true=np.zeros(4), scores=np.zeros((4, 2)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_bfloat16_outputs(multiclass):
    y, logits, probs = multiclass
    got = compute_metrics(["accuracy", "roc_auc"], y_true=torch.from_numpy(y).cuda(),
                          probs=torch.from_numpy(probs).to("cuda", torch.bfloat16))
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, probs.argmax(1)), abs=0.02)
    assert got["roc_auc"] == pytest.approx(compute_metrics(["roc_auc"], y_true=y, probs=probs)["roc_auc"], abs=0.01)
