"""The user's own arrays: a path to .npz, .pt/.pth or .csv.

* .npz: arrays named after the spec's inputs; the other arrays are targets
  (loaded with allow_pickle=False).
* .pt / .pth: a dict name -> tensor, loaded with torch.load(weights_only=True)
  (never unpickles code); the same naming rule as .npz.
* .csv: a header row and numeric columns; `target:` names the target column(s),
  every other column is a feature of the spec's single input.

`target:` (a name or a list) picks the targets, else every non-input array is
one.  Integer targets are class labels (long [N]); float targets are regression
targets ([N, k]).  A CSV column's numbers are all floats, so a target column is
taken as class labels when `task: classification`, or when `task` is unset and
the column holds integers >= 0 with at most 50 distinct values.
Held-out part: `test:` a second file in any of these formats, else the fraction
`val_split` (default 0.2) cut off by a fixed permutation (`seed`, default 0).
Inputs are used as given unless `normalize` asks for scaling by train statistics.
"""
from __future__ import annotations

import csv
import os

import numpy as np
import torch

from .tensors import DataError, TensorData, scale_features, seeded_split
from ..errors import did_you_mean

MAX_AUTO_CLASSES = 50


def load_file(path, cfg, specs, **_):
    """The user's file as (train, test, info); see the module docstring."""
    arrays = _read(path, cfg, specs)
    n = _count(path, arrays)
    test_arrays = None
    if cfg.get("test"):
        test_arrays = _read(cfg["test"], cfg, specs)
        _count(cfg["test"], test_arrays)
    if str(path).lower().endswith(".csv"):
        _csv_classes(cfg, arrays, test_arrays)
    if test_arrays is not None:
        train, test = _tensor_data(path, arrays, cfg, specs), _tensor_data(cfg["test"], test_arrays, cfg, specs)
    else:
        fraction = cfg.get("val_split", 0.2)
        if not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
            raise DataError(f"val_split must be a fraction between 0 and 1, not {fraction!r}",
                            path="train.data.val_split", hint="e.g. val_split: 0.2, or give a separate test: file")
        whole = _tensor_data(path, arrays, cfg, specs)
        tr, te = seeded_split(n, fraction, int(cfg.get("seed", 0)))
        train, test = whole.select(tr), whole.select(te)
    info = {"description": f"user data from {os.path.basename(str(path))}", "normalize": None, "targets": {}}
    if cfg.get("normalize"):
        for i, x in enumerate(train.inputs):
            if x.is_floating_point():
                a, b, info["normalize"] = scale_features(x.reshape(len(x), -1), test.inputs[i].reshape(len(test), -1),
                                                         cfg["normalize"])
                train.inputs[i], test.inputs[i] = a.view(x.shape), b.view(test.inputs[i].shape)
    for key, t in train.targets.items():
        if t.dtype == torch.long:
            top = max(int(t.max()) if len(t) else 0, int(test.targets[key].max()) if len(test) else 0)
            info["targets"][key] = {"kind": "class", "num_classes": top + 1}
        else:
            info["targets"][key] = {"kind": "regression", "shape": list(t.shape[1:])}
    classes = [k for k, v in info["targets"].items() if v["kind"] == "class"]
    first = "label" if "label" in classes else (classes[0] if classes else None)
    info["num_classes"] = info["targets"][first]["num_classes"] if first else None
    info["task_hint"] = "classification" if classes else ("regression" if train.targets else "unsupervised")
    return train, test, info


def _csv_classes(cfg, arrays, test_arrays):
    """CSV numbers are floats: turn each target column that holds class labels into longs."""
    task = cfg.get("task")
    if task not in (None, "classification", "regression"):
        raise DataError(f"unknown task {task!r} for CSV targets", path="train.data.task",
                        hint="use task: classification or task: regression")
    names = cfg.get("target")
    for name in [names] if isinstance(names, str) else list(names):
        both = torch.cat([arrays[name]] + ([test_arrays[name]] if test_arrays is not None else []))
        integral = bool(torch.equal(both, both.round())) and bool((both >= 0).all())
        if task == "classification" and not integral:
            raise DataError(f"task: classification needs integer class labels >= 0 in column {name!r}",
                            path="train.data.task", hint="use task: regression for real-valued targets")
        if task == "classification" or (task is None and integral and len(torch.unique(both)) <= MAX_AUTO_CLASSES):
            for part in (arrays, test_arrays):
                if part is not None:
                    part[name] = part[name].long().view(-1)


def _read(path, cfg, specs) -> dict:
    path = os.path.expanduser(str(path))
    if not os.path.isfile(path):
        raise DataError(f"data file {path} does not exist", path="train.data.dataset",
                        hint="give the path to a .npz, .pt or .csv file (relative paths start from the working folder)")
    suffix = os.path.splitext(path)[1].lower()
    if suffix in (".npz", ".pt", ".pth"):
        return read_arrays(path)
    if suffix == ".csv":
        return _read_csv(path, cfg, specs)
    raise DataError(f"data file {path} has an unknown format {suffix!r}", hint="use .npz, .pt or .csv")


NUMBER_KINDS = "biufc"        # numpy dtype kinds torch takes: bool, int, uint, float, complex


def read_arrays(path: str, *, bare: str | None = None, where: str = "train.data") -> dict:
    """The arrays of a .npz (loaded with allow_pickle=False) or .pt file (weights_only) as tensors
    by name, each with one row per sample.  `bare` names a .pt file's lone tensor (else a .pt file
    must hold a dict).  Text, Python objects and single numbers are DataErrors naming the array."""
    npz = path.lower().endswith(".npz")
    arrays = _read_npz(path, where) if npz else _read_pt(path, bare, where)
    if not arrays:
        raise DataError(f"{path} holds no arrays", path=where, hint="save one array per input (and target)")
    for name, value in arrays.items():
        if isinstance(value, np.ndarray) and value.dtype.kind not in NUMBER_KINDS:
            what = "text" if value.dtype.kind in "US" else f"values of dtype {value.dtype}"
            raise DataError(f"array {name!r} in {path} holds {what}, not numbers", path=where,
                            hint="store numbers: e.g. token ids as integers, features as floats")
        if not isinstance(value, (np.ndarray, torch.Tensor)):
            raise DataError(f"{path} holds a {type(value).__name__} under {name!r}, not a tensor", path=where,
                            hint="save it as torch.save({'x': inputs, 'label': labels}, path)")
        if value.ndim == 0:
            raise DataError(f"array {name!r} in {path} is a single number, not one row per sample", path=where,
                            hint="give each array a first dimension of samples, e.g. shape [N, ...]")
    return {k: torch.from_numpy(np.array(v)) if isinstance(v, np.ndarray) else v for k, v in arrays.items()}


def _read_npz(path: str, where: str) -> dict:
    import zipfile
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not a .npz file (a zip archive of arrays, as numpy.savez writes)", path=where,
                        hint="save the arrays with numpy.savez(path, x=inputs, label=labels)")
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            for name in archive.files:
                try:
                    arrays[name] = archive[name]
                except ValueError:      # numpy refuses object arrays without allow_pickle
                    raise DataError(f"array {name!r} in {path} holds Python objects, not numbers", path=where,
                                    hint="store numbers only (numpy object arrays are never unpickled)") from None
    except DataError:
        raise
    except Exception as e:      # a damaged archive: zipfile, zlib and numpy raise several types
        raise DataError(f"cannot read data file {path}: {e}".strip(), path=where,
                        hint="the file is damaged or truncated; write it again") from None
    return arrays


def _read_pt(path: str, bare: str | None, where: str) -> dict:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:      # unreadable, truncated, pickled objects: say which file and why
        text = str(e)
        found = [line.split("GLOBAL", 1)[1].split()[0] for line in text.splitlines() if "GLOBAL " in line]
        why = (f"it holds pickled Python objects ({found[0]}), refused: loading them would run code" if found
               else (text.strip().splitlines() or [type(e).__name__])[0].split(". ")[0])
        raise DataError(f"cannot read data file {path}: {why}", path=where,
                        hint="save tensors with torch.save({'x': inputs, 'label': labels}, path)") from None
    if isinstance(obj, torch.Tensor) and bare is not None:
        return {bare: obj}
    if not isinstance(obj, dict):
        raise DataError(f"{path} does not hold a dict of tensors (it holds a {type(obj).__name__})", path=where,
                        hint="save it as torch.save({'x': inputs, 'label': labels}, path)")
    return {str(k): v for k, v in obj.items()}


def _read_csv(path, cfg, specs) -> dict:
    with open(path, newline="") as f:
        header = next(csv.reader(f), None)
    if not header:
        raise DataError(f"CSV file {path} is empty", hint="the first row must name the columns")
    header = [h.strip() for h in header]
    wanted = cfg.get("target")
    if not wanted:
        raise DataError(f"CSV file {path} needs `target:` naming its target column(s)", path="train.data.target",
                        hint=f"its columns are: {', '.join(header)}")
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    for name in wanted:
        if name not in header:
            raise DataError(f"CSV file {path} has no column {name!r}", path="train.data.target",
                            hint=did_you_mean(name, header) or f"its columns are: {', '.join(header)}")
    if len(specs) != 1:
        raise DataError(f"CSV data gives 1 input (its feature columns) but the spec has {len(specs)}",
                        hint="use .npz or .pt for several inputs")
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise DataError(f"CSV file {path} has a non-numeric value: {e}", hint="every value must be a number")
    features = [i for i, h in enumerate(header) if h not in wanted]
    arrays = {specs[0].name: torch.from_numpy(table[:, features]).float()}
    for name in wanted:
        arrays[name] = torch.from_numpy(table[:, header.index(name)]).float().unsqueeze(1)
    return arrays


def _count(path, arrays) -> int:
    sizes = {k: int(v.shape[0]) if v.dim() else 0 for k, v in arrays.items()}
    if len(set(sizes.values())) > 1:
        raise DataError(f"arrays in {path} have different numbers of samples: "
                        + ", ".join(f"{k}={n}" for k, n in sizes.items()), hint="every array needs one row per sample")
    return next(iter(sizes.values()), 0)


def _tensor_data(path, arrays, cfg, specs) -> TensorData:
    missing = [s.name for s in specs if s.name not in arrays]
    if missing:
        name = missing[0]
        raise DataError(f"{path} has no array named {name!r} for the spec's input {name}", path=f"inputs.{name}",
                        hint=did_you_mean(name, arrays) or f"its arrays are: {', '.join(arrays)}; "
                        "name each input's array after the input")
    names = cfg.get("target")
    names = ([names] if isinstance(names, str) else list(names)) if names else \
        [k for k in arrays if k not in {s.name for s in specs}]
    for name in names:
        if name not in arrays:
            raise DataError(f"{path} has no target array {name!r}", path="train.data.target",
                            hint=did_you_mean(name, arrays) or f"its arrays are: {', '.join(arrays)}")
    targets = {}
    for name in names:
        t = arrays[name]
        if t.is_floating_point():       # regression: [N, k], the shape a Linear head gives
            targets[name] = t.float().reshape(len(t), -1) if t.dim() < 2 else t.float()
        else:                           # class labels: [N]
            targets[name] = t.long().view(-1) if t.dim() == 1 or t[0].numel() == 1 else t.long()
    inputs = [arrays[s.name] if not arrays[s.name].is_floating_point() else arrays[s.name].float() for s in specs]
    return TensorData(inputs, targets)
