"""TensorBoard logging (`train.log: [tensorboard]`, `specbuild train --log tensorboard`): an
observer of the session (see session.py) writing event files into RUN_DIR/tensorboard/.

    step/<name>          every scalar of each step (train_loss; a GAN's d_loss, g_loss), x = global step
    step/lr              the learning rate at each step (a GAN: step/lr/generator, step/lr/discriminator)
    epoch/<key>          every number of the epoch's row in metrics.jsonl, x = epoch number
    weights/<param>      a histogram of every parameter per epoch (a GAN: weights/generator/...)
    grads/<param>        the gradients of the epoch's last step, where the parameter has one
    samples              a GAN's grid of samples from its fixed noise, per epoch
    the graph            the model as traced once at the start (a GAN: generator then discriminator)

Steps count from 1, so a run resumed after S steps continues at step S + 1 and purges whatever a
stopped run logged past its checkpoint (`purge_step`); epoch numbers never exceed S, so the purge
keeps every epoch the checkpoint holds.  Nothing here draws random numbers from the run's
generators or changes its weights: a run logs and ends bitwise where an unlogged one ends.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch

from ..errors import SpecError
from .gan import sample_image_shape

FLUSH_SECS = 30           # how stale a running run's view in TensorBoard may get between epochs


class TensorBoardLog:
    def __init__(self, checked, folder):
        try:    # the optional extra: a missing one is refused before any training
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise _missing_extra(checked) from None
        self._writer_class = SummaryWriter
        self.path = folder.path / "tensorboard"
        self.writer = None       # made at the run's start, when the run folder exists and a resume is restored
        self.optimizers: dict = {}

    # -- the session's events ------------------------------------------------
    def run_start(self, session, loop) -> None:
        resumed = session.step > 0
        self.writer = self._writer_class(str(self.path), flush_secs=FLUSH_SECS,
                                         purge_step=session.step + 1 if resumed else None)
        self.optimizers = loop_optimizers(loop)
        self._graph(session, loop)

    def step_end(self, session, step, scalars) -> None:
        for name, value in _numbers(scalars).items():
            self.writer.add_scalar(f"step/{name}", value, step)
        for name, value in _rates(self.optimizers).items():
            self.writer.add_scalar(f"step/{name}", value, step)

    def epoch_end(self, session, loop, row) -> None:
        epoch = int(row["epoch"])
        written = set()
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"epoch/{key}", value, epoch)
                written.add(key)
        for name, value in _rates(self.optimizers).items():
            if name not in written:          # the trainer's row has "lr" already; a GAN's has none
                self.writer.add_scalar(f"epoch/{name}", value, epoch)
        for prefix, module in _networks(loop).items():
            self._histograms(prefix, module, epoch)
        if hasattr(loop, "fixed_noise"):
            self._samples(loop, epoch)
        self.writer.flush()

    def run_end(self, session, loop) -> None:
        if self.writer is None:
            return
        try:
            self.writer.close()
        except Exception as error:      # the run's own outcome matters more than its log
            session.progress.note(f"the TensorBoard event files in {self.path} may be incomplete: {error}")

    # -- what each event writes ----------------------------------------------
    def _graph(self, session, loop) -> None:
        """The model graph, traced on a couple of held-out samples; a model that cannot be traced
        gets a note in TensorBoard's text tab instead, and the run goes on."""
        try:
            module, example = _traceable(loop)
            with _untouched(session.device, module), warnings.catch_warnings():
                warnings.simplefilter("ignore")       # torch.jit.trace's deprecation and tracer warnings
                self.writer.add_graph(module, example, use_strict_trace=False)
        except Exception as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            self.writer.add_text("graph", f"the model graph could not be traced: {first[:300]}")

    def _histograms(self, prefix: str, module, epoch: int) -> None:
        for name, param in module.named_parameters():
            for kind, tensor in (("weights", param), ("grads", param.grad)):
                values = _finite(tensor)
                if values is not None:
                    self.writer.add_histogram(f"{kind}/{prefix}{name}", values, epoch)

    def _samples(self, loop, epoch: int) -> None:
        """The generator's output on the fixed noise as an image grid, as samples/epoch_NNN.png shows it."""
        shape = sample_image_shape(loop.image_shape)
        if shape is None:
            return
        from torchvision.utils import make_grid
        with _untouched(loop.session.device, loop.gen):
            samples = loop.gen(loop.fixed_noise).float().cpu()
        grid = make_grid(samples.reshape((-1,) + shape), nrow=8, normalize=True, value_range=(-1, 1))
        self.writer.add_image("samples", grid, epoch)


def loop_optimizers(loop) -> dict:
    """name -> optimizer: the trainer's one (no name), a GAN's per network."""
    if hasattr(loop, "opt_g"):
        return {"generator": loop.opt_g, "discriminator": loop.opt_d}
    return {"": loop.optimizer}


def _rates(optimizers: dict) -> dict:
    """lr, lr/generator, lr/group1 ...: each parameter group's learning rate."""
    rates = {}
    for name, optimizer in optimizers.items():
        groups = optimizer.param_groups
        for i, group in enumerate(groups):
            parts = ["lr", name, f"group{i}" if len(groups) > 1 else ""]
            rates["/".join(p for p in parts if p)] = float(group["lr"])
    return rates


def _numbers(scalars: dict) -> dict:
    """name -> float, with one device sync for all the step's tensors together."""
    tensors = {k: v for k, v in scalars.items() if isinstance(v, torch.Tensor)}
    values = {}
    if tensors:
        stacked = torch.stack([v.detach().float().reshape(()) for v in tensors.values()])
        values = dict(zip(tensors, stacked.tolist()))
    return {k: values[k] if k in values else float(v) for k, v in scalars.items()}


def _networks(loop) -> dict:
    """histogram prefix -> module: the trainer's model, or each GAN network."""
    if hasattr(loop, "gen"):
        return {"generator/": loop.gen, "discriminator/": loop.disc}
    return {"": loop.model}


def _finite(tensor):
    """A tensor's finite values as float32 on the CPU, or None when there are none to draw."""
    if tensor is None or tensor.numel() == 0:
        return None
    values = tensor.detach().float().flatten().cpu()
    values = values[torch.isfinite(values)]
    return values if values.numel() else None


class _Chain(torch.nn.Module):
    """A GAN's two networks in one graph: noise -> generator -> discriminator."""

    def __init__(self, generator, discriminator):
        super().__init__()
        self.generator, self.discriminator = generator, discriminator

    def forward(self, z):
        return self.discriminator(self.generator(z))


def _traceable(loop) -> tuple:
    """(module, example inputs) for the graph: two samples, held-out ones for the trainer."""
    if hasattr(loop, "gen"):
        return _Chain(loop.gen, loop.disc), (loop.fixed_noise[:2],)
    data = loop.test_data if len(loop.test_data) else loop.train_data
    return loop.model, tuple(x[:2] for x in data.inputs)


@contextmanager
def _untouched(device, module):
    """Runs a module for logging as evaluation does (eval mode, no gradients), then puts every
    submodule's mode and the random generators back as the run had them."""
    modes = [(m, m.training) for m in module.modules()]
    accelerated = device.type in ("cuda", "mps")
    try:
        with torch.random.fork_rng(devices=[device] if accelerated else [],
                                   device_type=device.type if accelerated else "cuda"), torch.no_grad():
            module.eval()
            yield
    finally:
        for m, training in modes:
            m.training = training


def _missing_extra(checked) -> SpecError:
    hint = "install the extra: pip install 'specbuild[tensorboard]'"
    train = checked.spec.data.get("train") if isinstance(checked.spec.data, dict) else None
    if isinstance(train, dict) and "tensorboard" in (train.get("log") or ()):      # the spec asks for it
        return SpecError([checked.spec.problem("logging to tensorboard needs the tensorboard package, which is "
                                               "not installed", ("train", "log"), hint=hint)])
    return SpecError("--log tensorboard needs the tensorboard package, which is not installed", hint=hint)
