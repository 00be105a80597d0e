"""Keeping a device busy: mixed precision, torch.compile and CUDA graphs for the training step.

`train.precision` (`--precision`) runs the step's forward and loss under torch.autocast on
the run's device type: `bf16` needs nothing else; `fp16` also scales the loss with a
torch.amp.GradScaler (unscaled before gradient clipping; an overflowing step is skipped and
the scale lowered), whose state goes into every checkpoint so that a resume continues it.
The weights stay float32 throughout: autocast casts inside the operations, never the
parameters, so checkpoints hold float32 weights at every precision.

`train.compile` (`--compile`) hands the module the training step calls to torch.compile;
`train.fast_step` (`--fast-step`) compiles it with mode="reduce-overhead", which replays the
forward and backward as CUDA graphs (so it is refused off CUDA): for small models, whose
steps are dominated by launching kernels.  Evaluation keeps the plain module (eval mode,
no_grad and its batch size would each compile again, for a pass that runs once an epoch).
"""
from __future__ import annotations

import contextlib
import warnings

import torch

from ..errors import SpecError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_NOTHING = contextlib.nullcontext()         # reusable: nullcontext keeps no state


def _autocast_works(device: torch.device, dtype: torch.dtype) -> str | None:
    """None when autocast to `dtype` runs on `device`; else why not (torch warns and disables
    autocast for a dtype it cannot do there, or raises)."""
    if device.type == "cuda" and dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
        return "this GPU cannot compute in bfloat16"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ones = torch.ones(4, 4, device=device)       # no random weights: the run's RNG stays untouched
            with torch.autocast(device.type, dtype=dtype):
                out = torch.mm(ones, ones)
            if dtype is torch.float16:
                torch.amp.GradScaler(device.type)
    except Exception as error:          # noqa: BLE001 - any refusal by torch means "not here"
        return str(error).splitlines()[0][:200] or type(error).__name__
    if out.dtype != dtype:
        return f"torch's autocast on {device.type} does not compute in {dtype}"
    return None


def check_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of `precision` on `device`; a SpecError when torch cannot do it there."""
    if precision not in PRECISIONS:
        raise SpecError(f"train.precision is {precision!r}, not one of {', '.join(PRECISIONS)}",
                        path="train.precision", hint="e.g. --precision bf16")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return None
    why = _autocast_works(device, dtype)
    if why is not None:
        other = "bf16" if precision == "fp16" else "fp32"
        raise SpecError(f"--precision {precision} cannot run on {device.type} with torch {torch.__version__}: {why}",
                        path="train.precision", hint=f"use --precision {other}, or train on a device that supports it")
    return dtype


class Accelerator:
    """What the training step wraps itself in: `context()` around forward and loss,
    `backward`, `unscale` (before clipping) and `step` in place of loss.backward() and
    optimizer.step(); `compiled(net)` is the module the step calls."""

    def __init__(self, config, device: torch.device, dist=None):
        self.precision, self.device = config.precision, device
        self.compile, self.fast_step = bool(config.compile), bool(config.fast_step)
        if self.fast_step and device.type != "cuda":
            raise SpecError(f"--fast-step (train.fast_step) replays the training step as CUDA graphs, and this run "
                            f"trains on {device.type}: it needs a CUDA GPU", path="train.fast_step",
                            hint="drop --fast-step, or train on a GPU with --device cuda; "
                                 "--compile speeds up the step on any device")
        if self.fast_step and dist is not None and dist.parallel:
            raise SpecError("--fast-step (CUDA graphs) is not supported with several workers yet",
                            path="train.fast_step", hint="drop --fast-step, or use --compile with --nproc")
        self.dtype = check_precision(self.precision, device)
        self.scaler = torch.amp.GradScaler(device.type) if self.precision == "fp16" else None

    def parts(self) -> dict:
        """What a checkpoint holds besides the model and optimizer: the loss scaler's state."""
        return {"scaler": self.scaler} if self.scaler is not None else {}

    def compiled(self, net: torch.nn.Module) -> torch.nn.Module:
        """`net` as the training step calls it: compiled when asked (the same parameters)."""
        if self.fast_step:
            return torch.compile(net, mode="reduce-overhead")
        if self.compile:
            return torch.compile(net)
        return net

    def context(self):
        """Around one step's forward and loss: a new CUDA graph step, then autocast (at fp32 and
        without the fast step, a context that does nothing, made once: this is every step)."""
        if self.dtype is None and not self.fast_step:
            return _NOTHING
        stack = contextlib.ExitStack()
        if self.fast_step:      # outputs of the last replay may be overwritten from here on
            torch.compiler.cudagraph_mark_step_begin()
        if self.dtype is not None:
            stack.enter_context(torch.autocast(self.device.type, dtype=self.dtype))
        return stack

    def wait(self) -> None:
        """Until the GPU has done the work queued so far, so that an epoch's time includes it."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def backward(self, loss: torch.Tensor) -> None:
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def unscale(self, optimizer) -> None:
        """The true gradients, before clipping their norm (fp16's scaled ones would be clipped wrong)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer) -> None:
        """The optimizer's step; with fp16, skipped when a gradient overflowed, and the scale adjusted."""
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()
