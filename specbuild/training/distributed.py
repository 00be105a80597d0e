"""Data parallelism on torch.distributed: where this process stands, and what ranks share.

`specbuild train --nproc N` starts N workers through torchrun's launcher; a user's own
`torchrun ... -m specbuild train SPEC` does the same across machines.  Each worker reads
RANK, WORLD_SIZE and LOCAL_RANK, joins the process group (gloo on the CPU, nccl on CUDA),
takes its share of every global batch (data/tensors.py), and the model is wrapped in
DistributedDataParallel, which averages the gradients.  Rank 0 alone writes the run folder.
With one process nothing here talks to anyone.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class Distributed:
    """Where this process stands in a data-parallel job (torchrun sets RANK and WORLD_SIZE)."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls) -> "Distributed":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as td
        rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
        if not td.is_initialized():
            cuda = torch.cuda.is_available() and os.environ.get("SPECBUILD_DEVICE", "auto") in ("auto", "cuda")
            if cuda:
                torch.cuda.set_device(local)
            td.init_process_group("nccl" if cuda else "gloo")
        return cls(rank, world, local)

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """The model as the training step calls it: DDP around it when several ranks train."""
        if not self.parallel:
            return model
        from torch.nn.parallel import DistributedDataParallel
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def sum(self, value: float) -> float:
        """`value` summed over the ranks."""
        if not self.parallel:
            return value
        import torch.distributed as td
        total = torch.tensor([float(value)], dtype=torch.float64)
        td.all_reduce(total)
        return float(total.item())

    def objects(self, value) -> list:
        """Every rank's `value`, in rank order."""
        if not self.parallel:
            return [value]
        import torch.distributed as td
        out = [None] * self.world_size
        td.all_gather_object(out, value)
        return out

    def gather(self, tensor: torch.Tensor, batch_size: int, total: int) -> torch.Tensor:
        """The whole set's outputs in the data's order, from each rank's share of each global batch
        of `batch_size` (as TensorData.batches cut them) over `total` samples."""
        if not self.parallel:
            return tensor
        pieces = [p.to(tensor.device) for p in self.objects(tensor.cpu())]
        taken, ordered = [0] * self.world_size, []
        step = batch_size
        for start in range(0, total, step):
            base, extra = divmod(min(step, total - start), self.world_size)
            for r in range(self.world_size):
                n = base + (1 if r < extra else 0)
                ordered.append(pieces[r][taken[r]:taken[r] + n])
                taken[r] += n
        return torch.cat(ordered) if ordered else tensor

    def close(self) -> None:
        if self.parallel:
            import torch.distributed as td
            if td.is_initialized():
                td.destroy_process_group()


def refuse_unsupported(checked) -> None:
    """What several workers cannot train yet: a GAN (two networks, two optimizers per step)."""
    if checked.train.is_gan:
        from ..errors import SpecError
        raise SpecError("data-parallel training of a GAN is not supported yet", path="train",
                        hint="train it as one process (no --nproc, no torchrun)")


def share_of_global_batch(local: int, index: int, batch_size: int, world_size: int, total: int) -> float:
    """What a rank's mean loss over its `local` samples of global batch `index` (of `batch_size`)
    is weighted by, so that DDP's average of the ranks' gradients is the gradient of the global
    batch's mean loss (shares of a batch that does not divide evenly differ by one sample)."""
    count = min(batch_size, total - index * batch_size)
    return local * world_size / count
