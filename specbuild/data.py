"""Data for the trainer: every data set becomes preloaded tensors.

`load_data(config, input_shapes)` turns the spec's `train.data` into a
`DataBundle` (train part, held-out test part, info).  Each data set is built by
a loader in `datasets_images`, `datasets_sklearn`, `datasets_synthetic` or
`datasets_files`; this module checks what they give against the spec's inputs
(count, shape, dtype) so a mismatch stops before any training.

Data sets (see DATASETS, and each loader's docstring for details):

* mnist-sample: the 10,000 real MNIST test digits bundled in the package,
  split by a fixed seeded permutation into 8,000 train and 2,000 held-out.
* mnist, fashion-mnist, kmnist, cifar10, cifar100, svhn: torchvision's sets,
  read from --data-root or the cache folder, downloaded there when allowed.
* digits, diabetes, iris, wine, breast-cancer: scikit-learn's bundled sets.
* sine, sequence-sum, tokens, mnist-side: synthetic tasks for the sequence,
  attention, embedding and multi-input models.
* a path to .npz, .pt or .csv: the user's own arrays.

Targets: class labels are long tensors [N]; regression targets are float
tensors [N, k] (k=1 for a scalar), the shape a Linear(..., k) head outputs.
"""
from __future__ import annotations

import importlib
import math
import os
from dataclasses import dataclass, field

from .errors import Problem, SpecError, did_you_mean


class DataError(SpecError):
    """The data cannot feed the spec: missing, malformed or the wrong shape."""

    def __init__(self, message: str, *, hint: str | None = None, path: str = "train.data"):
        super().__init__([Problem(message, path=path, hint=hint)])


@dataclass
class TensorData:
    inputs: list            # one tensor per spec input, in the spec's order; dim 0 = samples
    targets: dict           # name -> tensor with dim 0 = samples

    def __post_init__(self):
        sizes = {int(t.shape[0]) for t in [*self.inputs, *self.targets.values()]}
        if len(sizes) > 1:
            raise DataError(f"inputs and targets have different numbers of samples: {sorted(sizes)}")

    def __len__(self) -> int:
        first = self.inputs[0] if self.inputs else next(iter(self.targets.values()), None)
        return 0 if first is None else int(first.shape[0])

    def to(self, device, non_blocking: bool = False) -> "TensorData":
        return TensorData([x.to(device, non_blocking=non_blocking) for x in self.inputs],
                          {k: v.to(device, non_blocking=non_blocking) for k, v in self.targets.items()})

    def select(self, index) -> "TensorData":
        """The samples at `index` (a slice or an index tensor)."""
        return TensorData([x[index] for x in self.inputs], {k: v[index] for k, v in self.targets.items()})

    def num_batches(self, batch_size: int, *, world_size: int = 1, drop_last: bool = False) -> int:
        """How many batches `batches` yields per epoch (on every rank)."""
        step = batch_size * world_size
        return len(self) // step if drop_last else math.ceil(len(self) / step)

    def batches(self, batch_size: int, *, shuffle: bool, generator=None, rank: int = 0,
                world_size: int = 1, drop_last: bool = False):
        """Yield (inputs, targets) batches sliced from the preloaded tensors.

        One permutation per epoch, applied once to whole tensors, then
        contiguous slices: no per-sample Python.  With world_size > 1 a global
        batch holds batch_size * world_size samples and each rank takes its
        own share; every rank must pass a generator seeded alike (e.g. seed +
        epoch) so all see the same permutation and together cover the data
        once.  Every rank yields the same number of batches (DDP needs equal
        steps); a short last global batch is shared out as evenly as possible,
        so with fewer leftovers than ranks some ranks get an empty batch:
        pass drop_last=True to avoid that.
        """
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad batching: batch_size={batch_size}, rank={rank}, world_size={world_size}")
        import torch
        data = self
        if shuffle:
            perm = torch.randperm(len(self), generator=generator)
            data = self.select(perm.to(self.inputs[0].device) if self.inputs else perm)
        step = batch_size * world_size
        for start in range(0, len(data), step):
            count = min(step, len(data) - start)
            if drop_last and count < step:
                break
            # rank r's share of this global batch: as torch.tensor_split would cut it
            base, extra = divmod(count, world_size)
            lo = start + rank * base + min(rank, extra)
            hi = lo + base + (1 if rank < extra else 0)
            yield ([x[lo:hi] for x in data.inputs], {k: v[lo:hi] for k, v in data.targets.items()})


@dataclass
class DataBundle:
    train: TensorData
    test: TensorData         # the held-out part
    info: dict = field(default_factory=dict)


@dataclass
class InputSpec:
    name: str
    shape: tuple             # one sample's shape; None marks a dimension of any size
    dtype: object = None     # a torch.dtype; None: keep integer data as long, everything else float32


# spec dtype -> torch attribute; torch is imported only when data is loaded, so `specbuild list` stays quick
_DTYPES = {"float32": "float32", "float": "float32", "float64": "float64", "double": "float64",
           "float16": "float16", "half": "float16", "bfloat16": "bfloat16", "long": "long",
           "int64": "long", "int32": "int32", "int": "long", "bool": "bool"}

# name -> (module, loader function, options it accepts, description)
_REGISTRY = {
    "mnist-sample": ("datasets_images", "load_mnist_sample", {"normalize"},
                     "10,000 real MNIST digits bundled with specbuild (8,000 train / 2,000 held-out), [1, 28, 28]"),
    "mnist": ("datasets_images", "load_image_set", {"normalize"}, "MNIST handwritten digits, 60,000 + 10,000, [1, 28, 28]"),
    "fashion-mnist": ("datasets_images", "load_image_set", {"normalize"},
                      "Fashion-MNIST clothing images, 60,000 + 10,000, [1, 28, 28]"),
    "kmnist": ("datasets_images", "load_image_set", {"normalize"}, "Kuzushiji-MNIST characters, 60,000 + 10,000, [1, 28, 28]"),
    "cifar10": ("datasets_images", "load_image_set", {"normalize"}, "CIFAR-10 colour images, 50,000 + 10,000, [3, 32, 32]"),
    "cifar100": ("datasets_images", "load_image_set", {"normalize"},
                 "CIFAR-100 colour images, 100 classes, 50,000 + 10,000, [3, 32, 32]"),
    "svhn": ("datasets_images", "load_image_set", {"normalize"}, "Street View house numbers, 73,257 + 26,032, [3, 32, 32]"),
    "digits": ("datasets_sklearn", "load_sklearn", {"normalize"},
               "scikit-learn's 1,797 8x8 digits, [1, 8, 8] or [64], 10 classes (80/20 split)"),
    "diabetes": ("datasets_sklearn", "load_sklearn", {"normalize"},
                 "scikit-learn's diabetes regression: 10 features -> 1 target, both standardised (80/20 split)"),
    "iris": ("datasets_sklearn", "load_sklearn", {"normalize"}, "scikit-learn's iris: 4 features, 3 classes (80/20 split)"),
    "wine": ("datasets_sklearn", "load_sklearn", {"normalize"}, "scikit-learn's wine: 13 features, 3 classes (80/20 split)"),
    "breast-cancer": ("datasets_sklearn", "load_sklearn", {"normalize"},
                      "scikit-learn's breast cancer: 30 features, 2 classes (80/20 split)"),
    "sine": ("datasets_synthetic", "load_sine", {"samples", "seed"},
             "noisy sine windows [seq_len, 1] -> the next value (RNN/LSTM/GRU regression)"),
    "sequence-sum": ("datasets_synthetic", "load_sequence_sum", {"samples", "seed"},
                     "random sequences [seq_len, d] -> relu of the first feature's scaled sum (attention/Transformer)"),
    "tokens": ("datasets_synthetic", "load_tokens", {"samples", "seed", "num_embeddings"},
               "token ids [10] in [0, 1000) -> first token mod 10 (embedding models)"),
    "mnist-side": ("datasets_synthetic", "load_mnist_side", {"normalize", "seed"},
                   "two inputs: an mnist-sample image and a 10-d hint vector right 70% of the time (multi-input)"),
}
DATASETS = {name: entry[3] for name, entry in _REGISTRY.items()}
FILE_SUFFIXES = (".npz", ".pt", ".pth", ".csv")
_FILE_OPTIONS = {"normalize", "val_split", "test", "target", "task", "seed"}
# keys of train.data that belong to the trainer (or are given as arguments too): accepted, not used here
_GENERAL_OPTIONS = {"dataset", "path", "root", "limit", "batch_size", "shuffle", "val_split"}
DATA_OPTIONS = sorted(_GENERAL_OPTIONS | _FILE_OPTIONS | {o for e in _REGISTRY.values() for o in e[2]})
NORMALIZE_MODES = ("standard", "unit", "symmetric")


def default_cache_dir() -> str:
    return os.environ.get("SPECBUILD_DATA") or os.path.join(os.path.expanduser("~"), ".cache", "specbuild")


def parse_inputs(input_shapes: dict) -> list[InputSpec]:
    """The spec's inputs, name -> shape or {"shape": [...], "dtype": "long"}, as InputSpecs."""
    specs = []
    for name, value in (input_shapes or {}).items():
        dtype = None
        if isinstance(value, dict):
            dtype_name = value.get("dtype")
            value = value.get("shape")
            if dtype_name is not None:
                if str(dtype_name) not in _DTYPES:
                    raise DataError(f"input {name} has unknown dtype {dtype_name!r}", path=f"inputs.{name}.dtype",
                                    hint=did_you_mean(dtype_name, _DTYPES) or f"use one of {', '.join(_DTYPES)}")
                import torch
                dtype = getattr(torch, _DTYPES[str(dtype_name)])
        if isinstance(value, int):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise DataError(f"input {name} has no usable shape: {value!r}", path=f"inputs.{name}",
                            hint="give one sample's shape as a list, e.g. [1, 28, 28]")
        shape = tuple(d if isinstance(d, int) and d > 0 else None for d in value)
        specs.append(InputSpec(str(name), shape, dtype))
    if not specs:
        raise DataError("the spec declares no inputs, so there is nothing to feed the data to", path="inputs",
                        hint="declare the model's inputs, e.g. inputs: {x: [1, 28, 28]}")
    return specs


def load_data(config: dict | str, input_shapes: dict, *, root: str | None = None, download: bool = True,
              cache_dir: str | None = None, limit: int | None = None) -> DataBundle:
    """Load the data set named by the spec's `train.data` and fit it to the spec's inputs."""
    cfg = dict(config) if isinstance(config, dict) else {"dataset": config}
    name = cfg.get("dataset", cfg.get("path"))
    if not isinstance(name, str) or not name:
        raise DataError("train.data names no data set", hint=f"set dataset: to one of {', '.join(DATASETS)}, "
                        "or to a .npz, .pt or .csv file")
    root = root if root is not None else cfg.get("root")
    limit = limit if limit is not None else cfg.get("limit")
    specs = parse_inputs(input_shapes)
    key = name.lower()
    if key in _REGISTRY:
        module, func, options, _ = _REGISTRY[key]
    elif name.lower().endswith(FILE_SUFFIXES) or os.sep in name or "/" in name or os.path.isfile(name):
        module, func, options, key = "datasets_files", "load_file", _FILE_OPTIONS, name
    else:
        raise DataError(f"unknown data set {name!r}", path="train.data.dataset",
                        hint=(did_you_mean(key, DATASETS) or f"known data sets: {', '.join(DATASETS)}")
                        + " (or give a path to a .npz, .pt or .csv file)")
    for option in cfg:
        if option not in options and option not in _GENERAL_OPTIONS:
            allowed = sorted(options - {"dataset"})
            near = did_you_mean(option, allowed)
            raise DataError(f"option {option!r} does not apply to data set {name!r}", path=f"train.data.{option}",
                            hint=near or f"its options are: {', '.join(allowed) or 'none'}")
    if "normalize" in cfg and cfg["normalize"] not in NORMALIZE_MODES:
        raise DataError(f"unknown normalize mode {cfg['normalize']!r}", path="train.data.normalize",
                        hint=did_you_mean(str(cfg["normalize"]), NORMALIZE_MODES)
                        or "use standard (mean/std), unit ([0, 1]) or symmetric ([-1, 1])")
    loader = getattr(importlib.import_module(f"specbuild.{module}"), func)
    train, test, info = loader(key, cfg, specs, root=root, download=download,
                               cache_dir=cache_dir or default_cache_dir())
    if limit is not None:
        train, test = train.select(slice(0, int(limit))), test.select(slice(0, int(limit)))
    train, test = _fit(name, train, specs), _fit(name, test, specs)
    info = {"name": name, "num_classes": None, "task_hint": None, "normalize": None, "targets": {}, **info,
            "description": DATASETS.get(key) or info.get("description", ""),
            "sizes": {"train": len(train), "test": len(test)}}
    return DataBundle(train, test, info)


def _fit(name: str, data: TensorData, specs: list[InputSpec]) -> TensorData:
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


def _cast(name: str, x, spec: InputSpec):
    import torch
    integer = not (x.is_floating_point() or x.is_complex())
    dtype = spec.dtype or (torch.long if integer and x.dtype != torch.bool else torch.float32)
    if dtype in (torch.long, torch.int32) and not integer:
        if not torch.equal(x, x.round()):
            raise DataError(f"data set {name!r} gives {spec.name} as fractional numbers but the spec's input "
                            f"{spec.name} is {dtype}", path=f"inputs.{spec.name}.dtype",
                            hint="integer inputs (token ids) need integer data; drop the dtype for float data")
    return x if x.dtype == dtype else x.to(dtype)


def _show(shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


_KNOWN_SHAPES = {(1, 28, 28): "mnist-sample, mnist, fashion-mnist, kmnist",
                 (3, 32, 32): "cifar10, cifar100, svhn", (1, 8, 8): "digits", (64,): "digits",
                 (10,): "diabetes, tokens", (4,): "iris", (13,): "wine", (30,): "breast-cancer"}


def _shape_hint(got, want) -> str:
    hint = f"declare the input as {got} (or any shape with {math.prod(got)} elements)"
    if None not in want and tuple(want) in _KNOWN_SHAPES:
        hint += f", or train on a data set with samples of shape {want}: {_KNOWN_SHAPES[tuple(want)]}"
    return hint


# --- helpers shared by the loaders -------------------------------------------------

def seeded_split(n: int, test_fraction: float, seed: int) -> tuple:
    """A fixed permutation of range(n) cut into (train indices, test indices)."""
    import torch
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = min(n - 1, max(1, round(n * test_fraction))) if n > 1 else 0
    return perm[n_test:], perm[:n_test]


def class_target_info(labels, num_classes: int | None = None) -> dict:
    return {"kind": "class", "num_classes": int(num_classes if num_classes is not None else int(labels.max()) + 1)}


def scale_features(train, test, mode: str | None) -> tuple:
    """Scale tabular features by the train part's statistics: z-score, [0, 1] or [-1, 1].
    Returns (train, test, {"mode", "mean", "std"}) with x_scaled = (x - mean) / std."""
    import torch
    if mode is None:
        return train, test, None
    if mode == "standard":
        mean, std = train.mean(0), train.std(0)
    else:
        lo, hi = train.min(0).values, train.max(0).values
        mean, std = (lo, hi - lo) if mode == "unit" else ((lo + hi) / 2, (hi - lo) / 2)
    std = torch.where(std > 0, std, torch.ones_like(std))     # constant columns stay finite
    return (train - mean) / std, (test - mean) / std, {"mode": mode, "mean": mean.tolist(), "std": std.tolist()}
