"""Data for the trainer: every data set becomes preloaded tensors.

`load_data(config, inputs)` turns the spec's `train.data` into a
`DataBundle` (train part, held-out test part, info).  Each data set is built by
a loader in `images`, `tabular`, `synthetic` or `files` (see LOADERS); this module checks what they give against the spec's inputs
(count, shape, dtype) so a mismatch stops before any training.

Data sets (see DATASETS, and each loader's docstring for details):

* mnist-sample: the 10,000 real MNIST test digits bundled in the package,
  split by a fixed seeded permutation into 8,000 train and 2,000 held-out.
* mnist, fashion-mnist, kmnist, cifar10, cifar100, svhn: torchvision's sets,
  read from --data-root or the cache folder, downloaded there when allowed.
* digits, diabetes, iris, wine, breast-cancer: scikit-learn's bundled sets.
* sine, sequence-sum, tokens, mnist-side, token-stream: synthetic tasks for the
  sequence, attention, embedding, multi-input and language models.
* a path to .npz, .pt or .csv: the user's own arrays.

Targets: class labels are long tensors [N] (token-stream's: [N, T], one per
position); regression targets are float tensors [N, k] (k=1 for a scalar), the
shape a Linear(..., k) head outputs.
"""
from __future__ import annotations

import math
import os

from ..errors import did_you_mean
from ..inputs import Input, parse_input
from . import files, images, synthetic, tabular
from .catalog import (DATASETS, FILE_OPTIONS, FILE_SUFFIXES, GENERAL_OPTIONS, KNOWN_SHAPES, NORMALIZE_MODES,
                      OPTIONS)
from .tensors import DataBundle, DataError, TensorData, cast_input

LOADERS = {"mnist-sample": images.load_mnist_sample,
           **{name: images.load_image_set for name in images.IMAGE_SETS},
           **{name: tabular.load_sklearn for name in tabular.SETS},
           "sine": synthetic.load_sine, "sequence-sum": synthetic.load_sequence_sum,
           "tokens": synthetic.load_tokens, "mnist-side": synthetic.load_mnist_side,
           "token-stream": synthetic.load_token_stream}


def default_cache_dir() -> str:
    return os.environ.get("SPECBUILD_DATA") or os.path.join(os.path.expanduser("~"), ".cache", "specbuild")


def as_inputs(inputs) -> list[Input]:
    """The model's inputs: Inputs as the graph holds them, or a spec's raw `inputs:` mapping."""
    if isinstance(inputs, dict):
        inputs = [value if isinstance(value, Input) else parse_input(name, value, ("inputs", name))
                  for name, value in inputs.items()]
    specs = list(inputs or [])
    for spec in specs:
        if spec.shape is None or not all(isinstance(d, int) and d > 0 for d in spec.shape):
            raise DataError(f"input {spec.name} has no usable shape: {spec.shape!r}", path=f"inputs.{spec.name}",
                            hint="give one sample's shape as a list, e.g. [1, 28, 28]")
    if not specs:
        raise DataError("the spec declares no inputs, so there is nothing to feed the data to", path="inputs",
                        hint="declare the model's inputs, e.g. inputs: {x: [1, 28, 28]}")
    return specs


def load_data(config: dict | str, inputs, *, root: str | None = None, download: bool = True,
              cache_dir: str | None = None, limit: int | None = None) -> DataBundle:
    """Load the data set named by the spec's `train.data` and fit it to the spec's inputs
    (a list of Inputs, or the raw `inputs:` mapping)."""
    cfg = dict(config) if isinstance(config, dict) else {"dataset": config}
    name = cfg.get("dataset", cfg.get("path"))
    if not isinstance(name, str) or not name:
        raise DataError("train.data names no data set", hint=f"set dataset: to one of {', '.join(DATASETS)}, "
                        "or to a .npz, .pt or .csv file")
    root = root if root is not None else cfg.get("root")
    limit = limit if limit is not None else cfg.get("limit")
    specs = as_inputs(inputs)
    key = name.lower()
    if key in LOADERS:
        loader, options = LOADERS[key], OPTIONS[key]
    elif name.lower().endswith(FILE_SUFFIXES) or os.sep in name or "/" in name or os.path.isfile(name):
        loader, options, key = files.load_file, FILE_OPTIONS, name
    else:
        raise DataError(f"unknown data set {name!r}", path="train.data.dataset",
                        hint=(did_you_mean(key, DATASETS) or f"known data sets: {', '.join(DATASETS)}")
                        + " (or give a path to a .npz, .pt or .csv file)")
    for option in cfg:
        if option not in options and option not in GENERAL_OPTIONS:
            allowed = sorted(options - {"dataset"})
            near = did_you_mean(option, allowed)
            raise DataError(f"option {option!r} does not apply to data set {name!r}", path=f"train.data.{option}",
                            hint=near or f"its options are: {', '.join(allowed) or 'none'}")
    if "normalize" in cfg and cfg["normalize"] not in NORMALIZE_MODES:
        raise DataError(f"unknown normalize mode {cfg['normalize']!r}", path="train.data.normalize",
                        hint=did_you_mean(str(cfg["normalize"]), NORMALIZE_MODES)
                        or "use standard (mean/std), unit ([0, 1]) or symmetric ([-1, 1])")
    train, test, info = loader(key, cfg, specs, root=root, download=download,
                               cache_dir=cache_dir or default_cache_dir())
    if limit is not None:
        train, test = train.select(slice(0, int(limit))), test.select(slice(0, int(limit)))
    train, test = _fit(name, train, specs), _fit(name, test, specs)
    info = {"name": name, "num_classes": None, "task_hint": None, "normalize": None, "targets": {}, **info,
            "description": DATASETS.get(key) or info.get("description", ""),
            "sizes": {"train": len(train), "test": len(test)}}
    return DataBundle(train, test, info)


def _fit(name: str, data: TensorData, specs: list[Input]) -> TensorData:
    """Check the data's inputs against the spec's; reshape where the element counts agree."""
    if len(data.inputs) != len(specs):
        hint = ("mnist-side gives two inputs (an image and a 10-d side vector)" if len(specs) == 2
                else f"declare {len(data.inputs)} input(s) in the spec, or pick a data set with {len(specs)}")
        raise DataError(f"data set {name!r} gives {len(data.inputs)} input(s) but the spec has {len(specs)} "
                        f"({', '.join(s.name for s in specs)})", hint=hint)
    fitted = []
    for x, spec in zip(data.inputs, specs):
        got = list(x.shape[1:])
        want = list(spec.shape)
        if not (len(got) == len(want) and all(w is None or w == g for g, w in zip(got, want))):
            if None not in want and math.prod(got) == math.prod(want):
                x = x.reshape(x.shape[0], *want)
            else:
                raise DataError(
                    f"data set {name!r} gives {spec.name} samples of shape {got} but the spec's input "
                    f"{spec.name} is {_show(want)}", path=f"inputs.{spec.name}", hint=_shape_hint(got, want))
        fitted.append(_cast(name, x, spec))
    return TensorData(fitted, data.targets)


def _cast(name: str, x, spec: Input):
    return cast_input(x, spec.torch_dtype(), f"data set {name!r}'s {spec.name}", spec.name,
                      path=f"inputs.{spec.name}.dtype")


def _show(shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _shape_hint(got, want) -> str:
    hint = f"declare the input as {got} (or any shape with {math.prod(got)} elements)"
    if None not in want and tuple(want) in KNOWN_SHAPES:
        hint += f", or train on a data set with samples of shape {want}: {KNOWN_SHAPES[tuple(want)]}"
    return hint
