"""The generic trainer: one loop for every spec's `train` section.

Data is preloaded as tensors and batched by slicing; the model is the compiled
GraphModule returning the nodes the losses read (the logits, not a softmax the
spec returns for users); each epoch ends with a full evaluation (metrics from
scikit-learn over the whole held-out set), a row of history, and an atomic
checkpoint.  A resumed run restores weights,
optimizer, scheduler and every random state, so on the CPU it ends with the same
weights as a run that was never stopped.  GANs train in `gan`.

Data-parallel training can follow without a rewrite: batches are sharded by
rank, only rank 0 writes the run folder, and evaluation gathers every rank's
outputs before computing metrics.
"""
from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .checkpoint import load_checkpoint, rng_state, set_rng_state
from ..compiler.compile import build_model, pick_network
from ..data.load import load_data
from ..errors import SpecError
from .metrics import METRICS, compute_metrics, resolve_metrics
from .objectives import INPUT_TARGET, build_objectives, check_labels, infer_task, probability_nodes
from .optim import DEFAULT_OPTIMIZER, make_optimizer, make_scheduler, step_scheduler
from .progress import Progress
from .run_folder import RunFolder
from ..spec.loader import load_spec
from ..spec.validate import check

DEFAULT_EPOCHS = 5
DEFAULT_BATCH = 32
EVAL_BATCH = 1024


class TrainingStopped(Exception):
    """The run stopped early: a non-finite loss (exit 1) or Ctrl-C (exit 130); a checkpoint is kept."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Run:
    history: list
    model: object              # the trained module (a dict of them for a GAN)
    run_dir: object
    best: dict | None = None
    task: str = ""
    data_info: dict = field(default_factory=dict)


@dataclass
class Distributed:
    """Where this process stands in a data-parallel job (torchrun sets RANK and WORLD_SIZE)."""
    rank: int = 0
    world_size: int = 1

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Distributed":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1:
            raise SpecError("data-parallel training (WORLD_SIZE > 1) is not supported yet",
                            hint="run specbuild train as a single process")
        return cls()

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor   # one process: its outputs are all outputs


def pick_device(name: str | None) -> torch.device:
    if name in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SpecError("--device cuda, but no CUDA GPU is available here", hint="use --device cpu or auto")
    return torch.device(name)


def command_line_overrides(spec_data: dict, data=None, epochs=None, batch_size=None, lr=None, seed=None,
                           device=None, limit=None) -> dict:
    """The trainer's options as dotted overrides of the spec's `train` section, so the run's
    spec.yaml records what ran (a resumed run then uses the same data, --limit included)."""
    pairs = {"train.data.dataset": data, "train.epochs": epochs, "train.data.batch_size": batch_size,
             "train.optimizer.lr": lr, "train.seed": seed, "train.device": device, "train.data.limit": limit}
    out = {key: value for key, value in pairs.items() if value is not None}
    train = spec_data.get("train") if isinstance(spec_data.get("train"), dict) else {}
    if lr is not None and not isinstance(train.get("optimizer"), dict):
        out["train.optimizer.type"] = DEFAULT_OPTIMIZER["type"]   # --lr for the default optimizer
    return out


def _checkpoint_path(resume: str) -> str:
    if os.path.isdir(resume):
        for name in ("last.pt", "interrupted.pt"):
            if os.path.exists(os.path.join(resume, name)):
                return os.path.join(resume, name)
        raise SpecError(f"{resume} holds no checkpoint (last.pt)", file=resume, hint="pass a run folder or a .pt file")
    return resume


def train(spec, *, data=None, data_root=None, epochs=None, batch_size=None, lr=None, overrides=None,
          device=None, seed=None, out=None, resume=None, limit=None, download=True, progress=None) -> Run:
    """Train a spec (path, text, dict or Spec) as its `train` section says; returns history and model.
    With `resume`, the checkpoint's own spec is used and `spec` may be None."""
    state = None
    if resume is not None:
        path = _checkpoint_path(resume)
        state = load_checkpoint(path)
        spec = state["spec"]
        out = out or os.path.dirname(os.path.abspath(path))
    spec = load_spec(spec)
    cli = command_line_overrides(spec.data, data, epochs, batch_size, lr, seed, device, limit)
    checked = check(spec, overrides={**(overrides or {}), **cli})
    train_cfg = checked.data.get("train") or {}
    dist = Distributed.from_env()
    folder = RunFolder.create(out, checked.data["name"], writer=dist.is_writer)
    if train_cfg.get("task") == "gan" or "generator" in train_cfg:
        from .gan import train_gan
        return train_gan(checked, train_cfg, folder, state=state, data_root=data_root, download=download,
                         progress=progress)
    return _Trainer(checked, train_cfg, folder, dist, data_root, download, progress).run(state)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def data_config(train_cfg: dict) -> tuple[dict, int, bool]:
    """The spec's train.data as the data loader's options, plus the batch size and whether to shuffle."""
    cfg = train_cfg.get("data", "mnist-sample")
    cfg = dict(cfg) if isinstance(cfg, dict) else {"dataset": cfg}
    return cfg, int(cfg.pop("batch_size", DEFAULT_BATCH)), bool(cfg.pop("shuffle", True))


def loss_model(checked, network: str, objectives):
    """The model returning just the nodes the losses read (the logits): a softmax the spec
    returns for users is not computed where nothing reads it.  Weights as build_model's."""
    wanted = list(dict.fromkeys(o.on for o in objectives))
    return build_model(checked, network=network, outputs={n: n for n in wanted})


def model_inputs(checked, network: str) -> list:
    """The network's inputs, as the graph describes them (name, shape, dtype)."""
    return list(checked.graphs.networks[network].inputs.values())


def plain(info: dict) -> dict:
    """Data-set info as plain JSON data, safe for a weights_only checkpoint."""
    return json.loads(json.dumps(info, default=str))


class _Trainer:
    def __init__(self, checked, train_cfg, folder, dist, data_root, download, progress):
        self.checked, self.cfg, self.folder, self.dist = checked, train_cfg, folder, dist
        self.network = pick_network(checked, train_cfg.get("network"))
        self.graph = checked.graphs.networks[self.network]
        self.seed = int(train_cfg.get("seed", 0))
        self.device = pick_device(train_cfg.get("device"))
        data_cfg, self.batch_size, self.shuffle = data_config(train_cfg)
        self.bundle = load_data(data_cfg, model_inputs(checked, self.network), root=data_root, download=download)
        self.objectives = build_objectives(train_cfg, self.graph, self.bundle.info, train_cfg.get("task"))
        check_labels(self.objectives, checked.shapes[self.network], self.bundle)
        self.task = infer_task(train_cfg, self.objectives)
        self.metric_names = resolve_metrics(train_cfg.get("metrics") or _default_metrics(self.objectives))
        seed_everything(self.seed)
        self.model = loss_model(checked, self.network, self.objectives).to(self.device)
        self.optimizer = make_optimizer(train_cfg.get("optimizer"), self.model.parameters())
        self.epochs = int(train_cfg.get("epochs", DEFAULT_EPOCHS))
        self.steps_per_epoch = self.bundle.train.num_batches(self.batch_size, world_size=dist.world_size)
        self.scheduler, self.interval = make_scheduler(train_cfg.get("scheduler"), self.optimizer, self.epochs,
                                                       self.steps_per_epoch)
        self.monitor = train_cfg.get("monitor") or _default_monitor(self.objectives, self.metric_names)
        self.patience = (train_cfg.get("early_stopping") or {}).get("patience")
        self.min_delta = float((train_cfg.get("early_stopping") or {}).get("min_delta", 0.0))
        self.clip = train_cfg.get("clip_grad_norm")
        self.progress = progress if progress is not None else Progress(sys.stderr)
        self.train_data = self.bundle.train.to(self.device)
        self.test_data = self.bundle.test.to(self.device)
        self.shuffle_rng = torch.Generator().manual_seed(self.seed)
        self.history, self.best, self.start_epoch, self.step = [], None, 0, 0
        self.probability_nodes = probability_nodes(self.objectives, self.graph)

    # -- state ---------------------------------------------------------------
    def payload(self, epoch: int, **extra) -> dict:
        return {"spec": self.checked.data, "network": self.network, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "rng": rng_state(), "shuffle_rng": self.shuffle_rng.get_state(), "epoch": epoch, "step": self.step,
                "history": self.history, "best": self.best, "data_info": plain(self.bundle.info),
                "task": self.task, **extra}

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
            planned = getattr(self.scheduler, "total_steps", None)   # OneCycleLR: a schedule of fixed length
            if planned is not None and planned < self.epochs * self.steps_per_epoch:
                raise SpecError(f"the checkpoint's {type(self.scheduler).__name__} was planned for {planned} steps, "
                                f"fewer than {self.epochs} epochs take", path="train.epochs",
                                hint=f"resume with --epochs {int(state['epoch'])} at most, or start a new run")
        set_rng_state(state["rng"])
        self.shuffle_rng.set_state(state["shuffle_rng"])
        self.start_epoch, self.step = int(state["epoch"]), int(state["step"])
        self.history, self.best = list(state.get("history") or []), state.get("best")

    # -- the loop ------------------------------------------------------------
    def run(self, state=None) -> Run:
        if state is not None:
            self.restore(state)
        self.folder.write_spec(self.checked.data)
        epoch = self.start_epoch
        try:
            for epoch in range(self.start_epoch, self.epochs):
                row = self.one_epoch(epoch)
                improved = self.update_best(row)
                self.history.append(row)
                self.folder.write_history(self.history)
                self.folder.save(self.payload(epoch + 1), best=improved)
                self.progress.epoch_done(epoch + 1, self.epochs, row)
                if self.should_stop():
                    self.progress.note(f"early stopping: {self.monitor} has not improved for {self.patience} epochs")
                    break
        except KeyboardInterrupt:
            self.folder.save(self.payload(epoch, interrupted=True), name="interrupted.pt")
            raise TrainingStopped(f"interrupted during epoch {epoch + 1}; saved {self.folder.path / 'interrupted.pt'} "
                                  f"(resume from {self.folder.last} to repeat that epoch)", exit_code=130) from None
        finally:
            self.folder.plot(self.history)
        return Run(self.history, self.trained_model(), self.folder.path, self.best, self.task, self.bundle.info)

    def trained_model(self):
        """The model with the spec's own outputs (training read the loss nodes), holding the trained weights."""
        model = build_model(self.checked, network=self.network)
        model.load_state_dict(self.model.state_dict())
        return model.to(self.device).eval()

    def one_epoch(self, epoch: int) -> dict:
        started = time.perf_counter()
        self.model.train()
        total, total_cpu, count = torch.zeros((), device=self.device), 0.0, 0
        check_each_step = self.device.type == "cpu"   # a sync per step is free on the CPU, not on a GPU
        batches = self.train_data.batches(self.batch_size, shuffle=self.shuffle, generator=self.shuffle_rng,
                                          rank=self.dist.rank, world_size=self.dist.world_size)
        n_batches = self.train_data.num_batches(self.batch_size, world_size=self.dist.world_size)
        self.progress.epoch_start(epoch + 1, self.epochs, n_batches)
        for i, (inputs, targets) in enumerate(batches):
            self.optimizer.zero_grad(set_to_none=True)
            outputs = self.model(*inputs)
            loss = self.loss(outputs, inputs, targets)
            if check_each_step:
                value = loss.item()
                if not math.isfinite(value):
                    self.non_finite(value, epoch, i)
                total_cpu += value
            else:
                total += loss.detach()     # summed on the device: no sync per step
            loss.backward()
            if self.clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(self.clip))
            try:
                self.optimizer.step()
            except RuntimeError as error:   # e.g. an lr so large the update overflows
                raise TrainingStopped(f"the optimizer step failed at epoch {epoch + 1}, step {i + 1}: {error}; "
                                      f"{self.folder.kept()}") from None
            if self.interval == "step":
                step_scheduler(self.scheduler, None)
            count += 1
            self.step += 1
            self.progress.step(i + 1, loss)
        train_seconds = time.perf_counter() - started
        train_loss = (total.item() + total_cpu) / max(count, 1)
        if not math.isfinite(train_loss):
            self.non_finite(train_loss, epoch, count - 1)
        row = {"epoch": epoch + 1, "train_loss": train_loss}
        row.update(evaluate_model(self.model, self.test_data, self.objectives, self.metric_names,
                                  self.probability_nodes, self.dist))
        if not math.isfinite(row["val_loss"]):     # the last step left non-finite weights, or the data holds NaN
            self.non_finite(row["val_loss"], epoch, count - 1, what="the held-out loss")
        if self.interval == "epoch":
            step_scheduler(self.scheduler, row.get(self.monitor))
        row["lr"] = self.optimizer.param_groups[0]["lr"]
        row["train_seconds"] = round(train_seconds, 3)          # the optimisation alone
        row["seconds"] = round(time.perf_counter() - started, 3)  # with the evaluation
        return row

    def loss(self, outputs: dict, inputs: list, targets: dict) -> torch.Tensor:
        total = None
        for o in self.objectives:
            target = inputs[0] if o.target == INPUT_TARGET else targets[o.target]
            term = o(outputs[o.on], target)
            total = term * o.weight if total is None else total + term * o.weight
        return total

    def non_finite(self, value, epoch: int, step: int, what: str = "the loss"):
        raise TrainingStopped(f"{what} became {value} at epoch {epoch + 1}, step {step + 1}; {self.folder.kept()}",
                              exit_code=1)

    def update_best(self, row: dict) -> bool:
        value = row.get(self.monitor)
        if value is None or not math.isfinite(value):
            return False
        lower = _lower_is_better(self.monitor)
        if self.best is None or (value < self.best["value"] - self.min_delta if lower
                                 else value > self.best["value"] + self.min_delta):
            self.best = {"metric": self.monitor, "value": value, "epoch": row["epoch"]}
            return True
        return False

    def should_stop(self) -> bool:
        if not self.patience or self.best is None:
            return False
        return self.history[-1]["epoch"] - self.best["epoch"] >= int(self.patience)


def evaluate_model(model, data, objectives, metric_names, probability_nodes=(), dist=None) -> dict:
    """Loss and metrics over the whole of `data`, computed once from all outputs."""
    dist = dist or Distributed()
    was_training = model.training
    model.eval()
    collected = [[] for _ in objectives]     # per objective: two losses may read one node
    total, n = 0.0, 0
    with torch.no_grad():
        for inputs, targets in data.batches(EVAL_BATCH, shuffle=False, rank=dist.rank, world_size=dist.world_size):
            outputs = model(*inputs)
            loss = None
            for k, o in enumerate(objectives):
                target = inputs[0] if o.target == INPUT_TARGET else targets[o.target]
                term = o(outputs[o.on], target) * o.weight
                loss = term if loss is None else loss + term
                collected[k].append(outputs[o.on])
            batch = inputs[0].shape[0]
            total += float(loss) * batch
            n += batch
    model.train(was_training)
    row = {"val_loss": total / max(n, 1)}
    if not math.isfinite(row["val_loss"]):
        return row          # NaN or inf outputs: no metric is defined (scikit-learn refuses them)
    several = len(objectives) > 1
    for k, o in enumerate(objectives):
        output = dist.gather(torch.cat(collected[k]))
        target = data.inputs[0] if o.target == INPUT_TARGET else data.targets[o.target]
        prefix = f"val_{o.name}_" if several else "val_"
        if several:
            row[prefix + "loss"] = float(o(output, target))
        names = [m for m in metric_names if METRICS[m].kind == ("classification" if o.kind in ("classification", "binary")
                                                                 else "regression")]
        if not names:
            continue
        if o.kind in ("classification", "binary"):
            probs = o.probabilities(output, o.on in probability_nodes)
            values = compute_metrics(names, y_true=target.cpu().numpy(), probs=probs.float().cpu().numpy())
        else:
            flat = output.reshape(output.shape[0], -1).float().cpu().numpy()
            values = compute_metrics(names, y_true=target.reshape(output.shape[0], -1).float().cpu().numpy(), scores=flat)
        row.update({prefix + k: v for k, v in values.items()})
    return row


def _default_metrics(objectives) -> list[str]:
    names = []
    for o in objectives:
        names += ["accuracy"] if o.kind in ("classification", "binary") else ["mse", "mae"]
    return list(dict.fromkeys(names))


def _default_monitor(objectives, metric_names) -> str:
    if len(objectives) == 1 and objectives[0].kind == "classification" and "accuracy" in metric_names:
        return "val_accuracy"
    return "val_loss"


def _lower_is_better(metric: str) -> bool:
    return any(word in metric for word in ("loss", "mse", "mae"))
