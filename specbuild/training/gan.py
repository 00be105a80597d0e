"""Adversarial training for specs with a generator and a discriminator network.

Each batch takes one discriminator step (real samples labelled 1, generated
ones 0) and one generator step (its samples labelled 1), each with its own
optimizer built from `train.optimizer`, on the same weighted objective and the
same session (checkpoints, resume, Ctrl-C) as the supervised trainer.  Every
epoch saves a grid of samples from fixed noise as PNG, so progress is visible
from the first epoch on.
"""
from __future__ import annotations

import math
import time

import torch

from ..compiler.compile import build_model
from ..data.load import load_data
from ..spec.train_config import LossConfig
from .objectives import make_objective, objective_loss
from .optim import make_optimizer
from .session import Run, Session, TrainingStopped, changed_components, plain

GRID = 64
SCORE, REAL = "score", "real"     # what the adversarial objective reads and compares with


class GanLoop:
    def __init__(self, checked, folder, loader: dict, progress=None):
        config = self.config = checked.train
        self.session = session = Session(checked, folder, task="gan", progress=progress)
        device = session.device
        generator = checked.graphs.networks[config.generator]
        self.gen = build_model(checked, network=config.generator).to(device)
        self.disc = build_model(checked, network=config.discriminator).to(device)
        z_input = next(iter(generator.inputs.values()))
        self.latent = int(config.latent_dim or math.prod(z_input.shape))
        self.bundle = load_data(config.data.options,
                                list(checked.graphs.networks[config.discriminator].inputs.values()), **loader)
        loss = config.losses[0] if config.losses else LossConfig("BCELoss")
        self.objectives = [make_objective(loss, SCORE, REAL, "binary")]
        self.opt_g = make_optimizer(config.optimizer, self.gen.parameters())
        self.opt_d = make_optimizer(config.optimizer, self.disc.parameters())
        self.fixed_noise = torch.randn((GRID, self.latent), generator=torch.Generator().manual_seed(1)).to(device)
        self.real_data = self.bundle.train.to(device)
        self.image_shape = tuple(self.bundle.train.inputs[0].shape[1:])
        session.parts = {"model": {"generator": self.gen, "discriminator": self.disc},
                         "optimizer": {"generator": self.opt_g, "discriminator": self.opt_d}}
        session.extra = {"data_info": plain(self.bundle.info)}

    def run(self, state=None, source=None) -> Run:
        if state is not None:
            self.session.restore(state, source, skip=changed_components(state, self.config, self.session.progress))
        self.session.run(self)
        return Run(self.session.history, {"generator": self.gen, "discriminator": self.disc},
                   self.session.folder.path, None, "gan", self.bundle.info)

    def adversarial_loss(self, scores, label: torch.Tensor) -> torch.Tensor:
        return objective_loss(self.objectives, {SCORE: scores}, [], {REAL: label})

    def one_epoch(self, epoch: int) -> dict:
        session, device, batch_size = self.session, self.session.device, self.config.data.batch_size
        started = time.perf_counter()
        running = session.partial(epoch, {"sums": torch.zeros(4, device=device)})
        n_batches = self.real_data.num_batches(batch_size)
        session.progress.epoch_start(epoch + 1, session.epochs, n_batches)
        self.gen.train(), self.disc.train()
        # every GAN epoch shuffles
        for i, (inputs, _) in session.batches(epoch, self.real_data, batch_size, True, running):
            real = inputs[0]
            b = real.shape[0]
            ones, zeros = torch.ones(b, 1, device=device), torch.zeros(b, 1, device=device)
            fake = self.gen(torch.randn(b, self.latent, device=device))
            self.opt_d.zero_grad(set_to_none=True)
            d_real, d_fake = self.disc(real), self.disc(fake.detach())
            loss_d = self.adversarial_loss(d_real.reshape(b, 1), ones) + self.adversarial_loss(d_fake.reshape(b, 1), zeros)
            loss_d.backward()
            self.opt_d.step()
            self.opt_g.zero_grad(set_to_none=True)
            loss_g = self.adversarial_loss(self.disc(fake).reshape(b, 1), ones)
            loss_g.backward()
            self.opt_g.step()
            step = torch.stack([loss_d.detach(), loss_g.detach(), d_real.detach().mean(), d_fake.detach().mean()])
            if not torch.isfinite(step).all():
                raise TrainingStopped(f"the GAN's losses became {step[:2].tolist()} at epoch {epoch + 1}, "
                                      f"step {i + 1}; {session.folder.kept()}")
            running["sums"] += step
            session.step += 1
            session.after_step(i + 1, {"d_loss": loss_d.detach(), "g_loss": loss_g.detach()})
        means = (running["sums"] / max(n_batches, 1)).tolist()
        save_grid(self.gen, self.fixed_noise, self.image_shape,
                  session.folder.path / "samples" / f"epoch_{epoch + 1:03d}.png", session.folder.writer)
        return {"epoch": epoch + 1, "d_loss": means[0], "g_loss": means[1], "d_real": means[2], "d_fake": means[3],
                "seconds": round(time.perf_counter() - started, 3)}

    def update_best(self, row: dict) -> bool:
        return False        # no single number says one generator is better than another

    def should_stop(self) -> bool:
        return False


def sample_image_shape(shape) -> tuple | None:
    """(C, H, W) of a generated sample: the data's own, or MNIST's for a flat 784; None: no image."""
    shape = tuple(shape)
    if len(shape) == 3:
        return shape
    return (1, 28, 28) if math.prod(shape) == 784 else None


def save_grid(gen, noise, image_shape, path, writer: bool = True) -> None:
    """Samples from fixed noise, mapped from [-1, 1] (tanh) to pixels, as one PNG grid."""
    if not writer:
        return
    from torchvision.utils import save_image
    was_training = gen.training
    gen.eval()
    with torch.no_grad():
        samples = gen(noise).float().cpu()
    gen.train(was_training)
    shape = sample_image_shape(image_shape)
    if shape is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(samples.reshape((-1,) + shape), str(path), nrow=8, normalize=True, value_range=(-1, 1))
