"""A spec's `train:` section, read once into typed configuration.

The schema has checked each value's type and range; here the section becomes
dataclasses the training loops read as attributes (as nanoGPT's GPTConfig), with
torch-free defaults, and what needs the graph is checked: the node each loss reads
and the networks a GAN names.  Problems point at their line like every other.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Problem, did_you_mean

DEFAULT_DATASET = "mnist-sample"
DEFAULT_BATCH = 32
DEFAULT_EPOCHS = 5
DEFAULT_OPTIMIZER = {"type": "Adam", "lr": 0.001}
LOSS_KEYS = ("type", "on", "target", "weight")      # the rest of a loss entry are the loss's own arguments
GAN_ROLES = ("generator", "discriminator")


@dataclass(frozen=True)
class DataConfig:
    options: dict                       # what the data loader reads: dataset (or path), normalize, limit, ...
    batch_size: int = DEFAULT_BATCH
    shuffle: bool = True


@dataclass(frozen=True)
class LossConfig:
    type: str                           # a torch.nn loss class name
    on: str | None = None               # the node it reads; None: the model's only output
    target: str | None = None           # the data target it compares with; None: by its kind
    weight: float = 1.0
    args: dict = field(default_factory=dict)   # the loss class's own arguments
    path: tuple = ("train", "loss")


@dataclass(frozen=True)
class Component:
    """An optimizer or a scheduler: a torch class name and its own arguments."""
    type: str
    args: dict = field(default_factory=dict)
    interval: str = "epoch"             # schedulers: step once per "epoch" or per "step" (batch)


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = field(default_factory=lambda: DataConfig({"dataset": DEFAULT_DATASET}))
    losses: tuple = ()                  # LossConfigs; empty: chosen from the task and the data
    task: str | None = None
    optimizer: Component = field(default_factory=lambda: _component(DEFAULT_OPTIMIZER))
    scheduler: Component | None = None
    epochs: int = DEFAULT_EPOCHS
    metrics: tuple = ()                 # empty: chosen from the losses' kinds
    monitor: str | None = None          # empty: val_accuracy for one classifier, else val_loss
    patience: int | None = None         # early stopping
    min_delta: float = 0.0
    clip_grad_norm: float | None = None
    checkpoint_every: int | None = None  # steps between mid-epoch checkpoints (last.pt); None: epoch ends only
    seed: int = 0
    device: str = "auto"
    generator: str = "generator"
    discriminator: str = "discriminator"
    latent_dim: int | None = None
    precision: str = "fp32"             # the training step's autocast: fp32 (none), bf16 or fp16
    compile: bool = False               # torch.compile the module the training step calls
    fast_step: bool = False             # ... with mode="reduce-overhead" (CUDA graphs; CUDA only)
    log: tuple = ()                     # where else the run logs: "tensorboard"

    @property
    def is_gan(self) -> bool:
        return self.task == "gan"


def parse_train(train, graphs, spec, problems: list[Problem]) -> TrainConfig:
    """The typed `train:` section of a schema-checked spec; problems are appended to `problems`."""
    if not isinstance(train, dict):
        return TrainConfig()
    every_node = {n for g in graphs.networks.values() for n in list(g.nodes) + list(g.inputs)}
    raw_losses = train.get("loss")
    listed = isinstance(raw_losses, list)
    losses = []
    for i, entry in enumerate(raw_losses if listed else [raw_losses] if raw_losses is not None else []):
        path = ("train", "loss") + ((i,) if listed else ())
        on = entry.get("on")
        if on is not None and on not in every_node:
            problems.append(spec.problem(f"loss `on:` names {on!r}, which is no layer", path + ("on",),
                                         hint=did_you_mean(on, every_node) or "name the layer whose output the loss reads"))
        losses.append(LossConfig(entry["type"], on, entry.get("target"), float(entry.get("weight", 1.0)),
                                 {k: v for k, v in entry.items() if k not in LOSS_KEYS}, path))
    stopping = train.get("early_stopping") or {}
    config = TrainConfig(
        data=_data(train.get("data", DEFAULT_DATASET)), losses=tuple(losses),
        task="gan" if train.get("task") == "gan" or "generator" in train else train.get("task"),
        optimizer=_component(train.get("optimizer") or DEFAULT_OPTIMIZER),
        scheduler=_component(train["scheduler"]) if train.get("scheduler") else None,
        epochs=int(train.get("epochs", DEFAULT_EPOCHS)), metrics=tuple(train.get("metrics") or ()),
        monitor=train.get("monitor"), patience=stopping.get("patience"),
        min_delta=float(stopping.get("min_delta", 0.0)), clip_grad_norm=train.get("clip_grad_norm"),
        checkpoint_every=train.get("checkpoint_every"), seed=int(train.get("seed", 0)),
        device=train.get("device", "auto"),
        generator=train.get("generator", "generator"), discriminator=train.get("discriminator", "discriminator"),
        latent_dim=train.get("latent_dim"), precision=train.get("precision", "fp32"),
        compile=bool(train.get("compile", False)), fast_step=bool(train.get("fast_step", False)),
        log=tuple(train.get("log") or ()))
    faster = [key for key in ("compile", "fast_step") if getattr(config, key)]
    if config.is_gan and (config.precision != "fp32" or faster):
        key = "precision" if config.precision != "fp32" else faster[0]
        problems.append(spec.problem(f"train.{key} applies to the supervised trainer; a GAN trains in fp32, "
                                     "uncompiled", ("train", key) if key in train else ("train",),
                                     hint="drop --precision, --compile and --fast-step for this spec"))
    for role in GAN_ROLES:
        name = getattr(config, role)
        if role in train and name not in graphs.networks:
            problems.append(spec.problem(f"train.{role} names {name!r}, which is no network", ("train", role),
                                         hint=did_you_mean(name, graphs.networks)
                                         or "the spec's networks: " + ", ".join(graphs.networks)))
        elif config.is_gan and name not in graphs.networks:
            problems.append(spec.problem(f"a GAN needs a {role} network, and the spec has no network {name!r}",
                                         ("train",), hint=f"name it with train.{role}: or add it under networks:"))
    return config


def objective_names(reads: list[tuple[str, str | None]]) -> list[str]:
    """The names that prefix each loss's metric columns (`val_<name>_accuracy`), from (the node
    it reads, its `target:` as written): the node's name, unless several losses read that node;
    then the node and its target (`fc2_label`) where their targets differ, else the node and the
    loss's position among them (`fc2_1`, `fc2_2`), so no loss's figures overwrite another's."""
    names = []
    for i, (on, target) in enumerate(reads):
        same = [j for j, (other, _) in enumerate(reads) if other == on]
        if len(same) == 1:
            names.append(on)
        elif target is not None and [reads[j][1] for j in same].count(target) == 1:
            names.append(f"{on}_{target}")
        else:
            names.append(f"{on}_{same.index(i) + 1}")
    return names


def _data(raw) -> DataConfig:
    options = dict(raw) if isinstance(raw, dict) else {"dataset": raw}
    batch_size = int(options.pop("batch_size", DEFAULT_BATCH))
    shuffle = bool(options.pop("shuffle", True))
    return DataConfig(options, batch_size, shuffle)


def _component(raw: dict) -> Component:
    args = {k: (tuple(v) if isinstance(v, list) else v) for k, v in raw.items() if k not in ("type", "interval")}
    return Component(raw["type"], args, raw.get("interval", "epoch"))
