"""What every data set becomes: preloaded tensors (TensorData), split into a train and a
held-out part (DataBundle), batched by slicing; and the helpers the loaders share.
torch is imported only where tensors are made."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import Problem, SpecError


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
        return len(self) // batch_size if drop_last else math.ceil(len(self) / batch_size)

    def batches(self, batch_size: int, *, shuffle: bool, generator=None, rank: int = 0,
                world_size: int = 1, drop_last: bool = False):
        """Yield (inputs, targets) batches sliced from the preloaded tensors.

        One permutation per epoch, applied once to whole tensors, then
        contiguous slices: no per-sample Python.  `batch_size` is the global
        batch: with world_size > 1 each rank takes its own share of it (as
        even as the count allows), so N ranks train on what one process would
        train on; every rank must pass a generator seeded alike (e.g. seed +
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
        step = batch_size
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


def cast_input(x, dtype, what: str, input_name: str, path: str = "train.data"):
    """x as `dtype`, the dtype of the spec's input `input_name`; fractional numbers fed to an integer
    input (token ids) are a DataError naming `what` (where they come from), never truncated."""
    import torch
    integer = not (dtype.is_floating_point or dtype.is_complex) and dtype != torch.bool
    if integer and (x.is_floating_point() or x.is_complex()):
        fractional = (x != x.round()).reshape(len(x), -1).any(dim=1) if x.dim() else (x != x.round()).reshape(1)
        if bool(fractional.any()):
            sample = int(fractional.nonzero()[0, 0])
            value = next(float(v) for v in x[sample].reshape(-1) if v != v.round())
            dtype_name = str(dtype).removeprefix("torch.")
            raise DataError(f"{what} holds fractional numbers ({value:g} in sample {sample}) but the spec's input "
                            f"{input_name} is {dtype_name} (ids): they would be cut to whole numbers",
                            path=path, hint="give whole numbers for an integer input such as token ids, or drop "
                                            "its dtype for float data")
    return x if x.dtype == dtype else x.to(dtype)


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
    if mode == "standard":       # (the std of one sample is 0, not NaN with a warning)
        mean, std = train.mean(0), (train.std(0) if len(train) > 1 else torch.zeros_like(train[0]))
    else:
        lo, hi = train.min(0).values, train.max(0).values
        mean, std = (lo, hi - lo) if mode == "unit" else ((lo + hi) / 2, (hi - lo) / 2)
    std = torch.where(std > 0, std, torch.ones_like(std))     # constant columns stay finite
    return (train - mean) / std, (test - mean) / std, {"mode": mode, "mean": mean.tolist(), "std": std.tolist()}
