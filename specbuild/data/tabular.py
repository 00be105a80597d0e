"""scikit-learn's bundled data sets (they ship inside scikit-learn: no network).

Each is cut 80/20 into train and held-out by a fixed permutation (seed 0).
Features are scaled by the train part's statistics (`normalize`: standard by
default, unit = [0, 1], symmetric = [-1, 1]).

* digits: 1,797 8x8 grey digits as images [1, 8, 8] (a [64] input is reshaped),
  targets "label" (10 classes) and "ink", like the other image sets.
* diabetes: 442 patients, 10 features -> "y" [N, 1], disease progression after a
  year, standardised by the train part's mean/std (info["targets"]["y"] keeps them);
  the shape the guide's single-output model (Linear(10, 128) ... Linear(128, 1)) takes.
* iris (4 features, 3 classes), wine (13, 3), breast-cancer (30, 2): "label".
"""
from __future__ import annotations

import torch

from .tensors import TensorData, class_target_info, scale_features, seeded_split
from .images import image_bundle

SPLIT_SEED = 0
TEST_FRACTION = 0.2
SETS = {"digits": "load_digits", "diabetes": "load_diabetes", "iris": "load_iris", "wine": "load_wine",
            "breast-cancer": "load_breast_cancer"}


def load_sklearn(name, cfg, specs, **_):
    import sklearn.datasets
    kwargs = {"scaled": False} if name == "diabetes" else {}    # raw features: we scale by train stats
    raw = getattr(sklearn.datasets, SETS[name])(**kwargs)
    x = torch.as_tensor(raw.data, dtype=torch.float32)
    y = torch.as_tensor(raw.target)
    tr, te = seeded_split(len(x), TEST_FRACTION, SPLIT_SEED)
    if name == "digits":
        images = (x / 16.0).view(-1, 1, 8, 8)      # pixel values are 0..16
        return image_bundle(name, images[tr], y[tr].long(), images[te], y[te].long(), cfg, classes=10)
    x_train, x_test, scaling = scale_features(x[tr], x[te], cfg.get("normalize", "standard"))
    info = {"normalize": scaling}
    if name == "diabetes":
        y = y.float().unsqueeze(1)
        mean, std = float(y[tr].mean()), float(y[tr].std())
        y = (y - mean) / std
        info.update(task_hint="regression", num_classes=None,
                    targets={"y": {"kind": "regression", "shape": [1], "mean": mean, "std": std}})
        key = "y"
    else:
        y = y.long()
        classes = int(y.max()) + 1
        info.update(task_hint="classification", num_classes=classes, targets={"label": class_target_info(y, classes)})
        key = "label"
    return TensorData([x_train], {key: y[tr]}), TensorData([x_test], {key: y[te]}), info
