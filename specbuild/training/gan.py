"""Adversarial training for specs with a generator and a discriminator network.

Each batch takes one discriminator step (real samples labelled 1, generated
ones 0) and one generator step (its samples labelled 1), each with its own
optimizer built from `train.optimizer`.  Every epoch saves a grid of samples
from fixed noise as PNG, so progress is visible from the first epoch on.
"""
from __future__ import annotations

import math
import sys
import time

import torch

from .checkpoint import rng_state, set_rng_state
from ..compiler.compile import build_model
from ..data.load import load_data
from ..errors import SpecError
from .optim import make_optimizer
from .progress import Progress
from ..resolve import resolve_target
from .. import registry
from .trainer import (DEFAULT_EPOCHS, Run, TrainingStopped, data_config, pick_device, plain,
                      seed_everything, model_inputs)

GRID = 64


def train_gan(checked, cfg, folder, *, state=None, data_root=None, download=True, progress=None) -> Run:
    names = {role: cfg.get(role, role) for role in ("generator", "discriminator")}
    for role, name in names.items():
        if name not in checked.graphs.networks:
            raise SpecError(f"a GAN needs a {role} network, and the spec has no network {name!r}",
                            file=checked.spec.file, path=f"train.{role}",
                            hint="name it with train." + role + ": or add it under networks:")
    device = pick_device(cfg.get("device"))
    seed_everything(int(cfg.get("seed", 0)))
    gen = build_model(checked, network=names["generator"]).to(device)
    disc = build_model(checked, network=names["discriminator"]).to(device)
    (z_name, z_input), = list(checked.graphs.networks[names["generator"]].inputs.items())[:1]
    latent = int(cfg.get("latent_dim") or math.prod(z_input.shape))
    data, batch_size, _ = data_config(cfg)      # every GAN epoch shuffles
    bundle = load_data(data, model_inputs(checked, names["discriminator"]), root=data_root, download=download)
    loss_entry = cfg.get("loss") if isinstance(cfg.get("loss"), dict) else {"type": "BCELoss"}
    criterion = resolve_target(registry.CATALOG["losses"][loss_entry["type"]]["target"])()
    opt_g = make_optimizer(cfg.get("optimizer"), gen.parameters())
    opt_d = make_optimizer(cfg.get("optimizer"), disc.parameters())
    shuffle_rng = torch.Generator().manual_seed(int(cfg.get("seed", 0)))
    fixed_noise = torch.randn((GRID, latent), generator=torch.Generator().manual_seed(1)).to(device)
    epochs = int(cfg.get("epochs", DEFAULT_EPOCHS))
    history, start = [], 0
    if state is not None:
        gen.load_state_dict(state["model"]["generator"])
        disc.load_state_dict(state["model"]["discriminator"])
        opt_g.load_state_dict(state["optimizer"]["generator"])
        opt_d.load_state_dict(state["optimizer"]["discriminator"])
        set_rng_state(state["rng"])
        shuffle_rng.set_state(state["shuffle_rng"])
        history, start = list(state.get("history") or []), int(state["epoch"])
    progress = progress if progress is not None else Progress(sys.stderr)
    folder.write_spec(checked.data)
    real_data = bundle.train.to(device)
    image_shape = tuple(bundle.train.inputs[0].shape[1:])

    def payload(epoch):
        return {"spec": checked.data, "task": "gan", "epoch": epoch, "history": history,
                "model": {"generator": gen.state_dict(), "discriminator": disc.state_dict()},
                "optimizer": {"generator": opt_g.state_dict(), "discriminator": opt_d.state_dict()},
                "rng": rng_state(), "shuffle_rng": shuffle_rng.get_state(), "data_info": plain(bundle.info)}

    try:
        for epoch in range(start, epochs):
            started = time.perf_counter()
            sums = torch.zeros(4, device=device)
            n_batches = real_data.num_batches(batch_size)
            progress.epoch_start(epoch + 1, epochs, n_batches)
            gen.train(), disc.train()
            for i, (inputs, _) in enumerate(real_data.batches(batch_size, shuffle=True, generator=shuffle_rng)):
                real = inputs[0]
                b = real.shape[0]
                ones, zeros = torch.ones(b, 1, device=device), torch.zeros(b, 1, device=device)
                fake = gen(torch.randn(b, latent, device=device))
                opt_d.zero_grad(set_to_none=True)
                d_real, d_fake = disc(real), disc(fake.detach())
                loss_d = criterion(d_real.reshape(b, 1), ones) + criterion(d_fake.reshape(b, 1), zeros)
                loss_d.backward()
                opt_d.step()
                opt_g.zero_grad(set_to_none=True)
                loss_g = criterion(disc(fake).reshape(b, 1), ones)
                loss_g.backward()
                opt_g.step()
                step = torch.stack([loss_d.detach(), loss_g.detach(), d_real.detach().mean(), d_fake.detach().mean()])
                if not torch.isfinite(step).all():
                    raise TrainingStopped(f"the GAN's losses became {step[:2].tolist()} at epoch {epoch + 1}, "
                                          f"step {i + 1}; {folder.kept()}")
                sums += step
                progress.step(i + 1, loss_d)
            means = (sums / max(n_batches, 1)).tolist()
            row = {"epoch": epoch + 1, "d_loss": means[0], "g_loss": means[1], "d_real": means[2], "d_fake": means[3],
                   "seconds": round(time.perf_counter() - started, 3)}
            history.append(row)
            save_grid(gen, fixed_noise, image_shape, folder.path / "samples" / f"epoch_{epoch + 1:03d}.png", folder.writer)
            folder.write_history(history)
            folder.save(payload(epoch + 1))
            progress.epoch_done(epoch + 1, epochs, row)
    except KeyboardInterrupt:
        folder.save(payload(epoch), name="interrupted.pt")
        raise TrainingStopped(f"interrupted during epoch {epoch + 1}; saved {folder.path / 'interrupted.pt'}",
                              exit_code=130) from None
    finally:
        folder.plot(history)
    return Run(history, {"generator": gen, "discriminator": disc}, folder.path, None, "gan", bundle.info)


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
    shape = image_shape if len(image_shape) == 3 else (1, 28, 28) if math.prod(image_shape) == 784 else None
    if shape is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(samples.reshape((-1,) + shape), str(path), nrow=8, normalize=True, value_range=(-1, 1))
