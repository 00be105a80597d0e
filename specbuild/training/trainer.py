"""The generic trainer: one loop for every spec's `train` section.

Data is preloaded as tensors and batched by slicing; the model is the compiled
GraphModule returning the nodes the losses read (the logits, not a softmax the
spec returns for users); each epoch ends with a full evaluation (metrics from
scikit-learn over the whole held-out set), a row of history, and an atomic
checkpoint written by the session, which also restores every part on resume, so
on the CPU a resumed run ends with the same weights as one never stopped.  GANs
train in `gan`, on the same session.

Data-parallel training can follow without a rewrite: batches are sharded by
rank, only rank 0 writes the run folder, and evaluation gathers every rank's
outputs before computing metrics.
"""
from __future__ import annotations

import math
import os
import time

import torch

from ..compiler.compile import build_model, pick_network
from ..compiler.weights import fit_weights, read_state_dict
from ..data.load import load_data
from ..errors import SpecError
from ..spec.loader import load_spec
from ..spec.train_config import DEFAULT_OPTIMIZER
from ..spec.validate import check
from .checkpoint import load_checkpoint
from .evaluate import check_token_ids, evaluate_model, loss_model, run_metrics
from .objectives import build_objectives, check_labels, infer_task, objective_loss, probability_nodes
from .optim import make_optimizer, make_scheduler, step_scheduler
from .run_folder import RunFolder
from .gan import GanLoop
from .accelerate import Accelerator
from .distributed import Distributed, refuse_unsupported, share_of_global_batch
from .observers import standard_observers
from .session import Run, Session, TrainingStopped, changed_components, plain


def command_line_overrides(spec_data: dict, data=None, epochs=None, batch_size=None, lr=None, seed=None,
                           device=None, limit=None, precision=None, compile=None, fast_step=None,
                           log=None) -> dict:
    """The trainer's options as dotted overrides of the spec's `train` section, so the run's
    spec.yaml records what ran (a resumed run then uses the same data, --limit included)."""
    pairs = {"train.data.dataset": data, "train.epochs": epochs, "train.data.batch_size": batch_size,
             "train.optimizer.lr": lr, "train.seed": seed, "train.device": device, "train.data.limit": limit,
             "train.precision": precision, "train.compile": compile, "train.fast_step": fast_step,
             "train.log": None if log is None else list(log)}
    out = {key: value for key, value in pairs.items() if value is not None}
    train = spec_data.get("train") if isinstance(spec_data.get("train"), dict) else {}
    if lr is not None and not isinstance(train.get("optimizer"), dict):
        out["train.optimizer.type"] = DEFAULT_OPTIMIZER["type"]   # --lr for the default optimizer
    return out


def _checkpoint_path(resume: str) -> str:
    if os.path.isdir(resume):
        for name in ("last.pt", "interrupted.pt"):     # interrupted.pt: written by 0.1.0 on Ctrl-C
            if os.path.exists(os.path.join(resume, name)):
                return os.path.join(resume, name)
        raise SpecError(f"{resume} holds no checkpoint (last.pt)", file=resume, hint="pass a run folder or a .pt file")
    return resume


def _same_model(given, recorded: dict, path: str) -> None:
    """With --resume, a spec given too must describe the checkpoint's model (its train section
    may differ: the checkpoint's own, with the command line's options, is what continues)."""
    given = load_spec(given)
    for key in sorted(set(given.data) | set(recorded), key=str):
        if key not in ("train", "doc", "tune") and given.data.get(key) != recorded.get(key):
            raise SpecError(f"--resume continues the run in {path}, whose spec differs from this one at {key!r}",
                            file=given.file, path=str(key),
                            hint="drop the spec to continue that run as it was, or train this spec as a new run")


def train(spec, *, data=None, data_root=None, epochs=None, batch_size=None, lr=None, overrides=None,
          device=None, seed=None, out=None, resume=None, limit=None, download=True, progress=None,
          init_from=None, precision=None, compile=None, fast_step=None, log=None, observers=()) -> Run:
    """Train a spec (path, text, dict or Spec) as its `train` section says; returns history and model.
    With `resume`, the checkpoint's own spec is used; `spec` may be None, or must describe the
    same model.  With `init_from` (a weights file: see compiler/weights.py), the model starts
    from its weights, which must all fit, instead of fresh ones.  `precision`, `compile` and
    `fast_step` are train.precision, train.compile and train.fast_step (see accelerate.py); `log`
    is train.log (e.g. ["tensorboard"]).  `observers` follow the run (see session.py), after
    those the spec asks for."""
    if init_from is not None and resume is not None:
        raise SpecError("--init-from and --resume do not go together: --resume restores the run's own weights, "
                        "with everything else", hint="drop --init-from to continue the run, or --resume to start "
                                                     "a new run from the file's weights")
    state = source = resuming = None
    if resume is not None:
        source = _checkpoint_path(resume)
        state = load_checkpoint(source)
        if not isinstance(state.get("spec"), dict):
            raise SpecError("this checkpoint holds no spec to rebuild its model from", file=source,
                            hint="resume from a checkpoint written by specbuild train")
        if spec is not None:
            _same_model(spec, state["spec"], source)
        spec = state["spec"]
        resuming = os.path.dirname(os.path.abspath(source))
        out = out or resuming
    spec = load_spec(spec)
    cli = command_line_overrides(spec.data, data, epochs, batch_size, lr, seed, device, limit,
                                 precision, compile, fast_step, log)
    checked = check(spec, overrides={**(overrides or {}), **cli})
    init = None if init_from is None else _initial_weights(checked, init_from)
    dist = Distributed.from_env()
    if dist.parallel:
        refuse_unsupported(checked)
    folder = RunFolder.create(out, checked.data["name"], writer=dist.is_writer, resuming=resuming)
    loader = dict(root=data_root, download=download)
    following = [*standard_observers(checked, folder), *observers]    # a missing extra is refused before any data loads
    loop = GanLoop(checked, folder, loader, progress) if checked.train.is_gan else \
        Trainer(checked, folder, dist, loader, progress, init)
    loop.session.observers += following
    try:
        return loop.run(state, source)
    except (RuntimeError, OSError) as error:
        if not dist.parallel or not _lost_a_worker(error):
            raise
        raise TrainingStopped(f"worker rank {dist.rank} lost touch with the other workers (one of them stopped): "
                              f"{str(error).splitlines()[0][:160]}", exit_code=1) from None
    finally:
        dist.close()


def _lost_a_worker(error: Exception) -> bool:
    """A collective failed because another rank is gone (gloo: connection reset or closed)."""
    import torch.distributed as td
    text = str(error)
    return isinstance(error, td.DistError) or "gloo" in text or "Connection reset" in text or "NCCL" in text


def _initial_weights(checked, path) -> tuple[str, dict]:
    """(the file's absolute path, its tensors) for --init-from, read before any data is loaded."""
    if checked.train.is_gan:
        names = ", ".join(checked.graphs.networks)
        raise SpecError(f"--init-from gives one network its weights, and this spec trains several ({names})",
                        file=checked.spec.file, path="train",
                        hint="train it from fresh weights, or continue a run of it with --resume")
    path = os.path.abspath(os.fspath(path))
    return path, read_state_dict(path, network=pick_network(checked, None))


class Trainer:
    """The supervised loop: every objective's weighted loss, one optimizer, an optional scheduler."""

    def __init__(self, checked, folder, dist, loader: dict, progress=None, init=None):
        config = self.config = checked.train
        self.checked = checked
        self.network = pick_network(checked, None)
        self.graph = checked.graphs.networks[self.network]
        self.bundle = load_data(config.data.options, list(self.graph.inputs.values()), **loader)
        self.objectives = build_objectives(config, self.graph, self.bundle.info)
        check_labels(self.objectives, checked.shapes[self.network], self.bundle)
        self.task = infer_task(config, self.objectives)
        self.metric_names = run_metrics(config, self.objectives)
        self.session = session = Session(checked, folder, task=self.task, progress=progress, dist=dist)
        self.accel = Accelerator(config, session.device, dist)     # precision, compile, fast step
        self.model = loss_model(checked, self.network, self.objectives)
        if init is not None:                    # --init-from: (path, tensors); a misfit is refused before training
            fit_weights(self.model, init[1], init[0])
        self.model = self.model.to(session.device)
        self.net = dist.wrap(self.model, session.device)     # what the training step calls: DDP with several ranks
        self.net = self.accel.compiled(self.net)             # torch.compile'd with --compile or --fast-step
        for part in (self.bundle.train, self.bundle.test):       # ids an Embedding cannot look up
            check_token_ids(self.model, self.graph, part.inputs, f"data set {self.bundle.info['name']!r}", "train")
        self.optimizer = make_optimizer(config.optimizer, self.model.parameters())
        self.steps_per_epoch = self.bundle.train.num_batches(config.data.batch_size, world_size=dist.world_size)
        self.scheduler, self.interval = make_scheduler(config.scheduler, self.optimizer, config.epochs,
                                                       self.steps_per_epoch)
        self.monitor = config.monitor or _default_monitor(self.objectives, self.metric_names)
        self.train_data = self.bundle.train.to(session.device)
        self.test_data = self.bundle.test.to(session.device)
        self.probability_nodes = probability_nodes(self.objectives, self.graph)
        session.parts = {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler,
                         **self.accel.parts()}
        session.extra = {"network": self.network, "data_info": plain(self.bundle.info)}
        if init is not None:
            self.record_init(init[0])

    def record_init(self, path: str) -> None:
        """Note in every checkpoint, and atop the run's spec.yaml, where the first weights came from."""
        self.session.extra["init_from"] = self.session.folder.init_from = path

    def run(self, state=None, source=None) -> Run:
        session = self.session
        if state is not None:
            session.restore(state, source, skip=changed_components(state, self.config, session.progress))
            self._check_schedule_length(state)
            if state.get("init_from"):
                self.record_init(state["init_from"])
        session.run(self)
        return Run(session.history, self.trained_model(), session.folder.path, session.best, self.task,
                   self.bundle.info)

    def _check_schedule_length(self, state) -> None:
        planned = getattr(self.scheduler, "total_steps", None)   # OneCycleLR: a schedule of fixed length
        if planned is not None and planned < self.config.epochs * self.steps_per_epoch:
            raise SpecError(f"the checkpoint's {type(self.scheduler).__name__} was planned for {planned} steps, "
                            f"fewer than {self.config.epochs} epochs take", path="train.epochs",
                            hint=f"resume with --epochs {int(state['epoch'])} at most, or start a new run")

    def trained_model(self):
        """The model with the spec's own outputs (training read the loss nodes), holding the trained weights."""
        model = build_model(self.checked, network=self.network)
        model.load_state_dict(self.model.state_dict())
        return model.to(self.session.device).eval()

    def one_epoch(self, epoch: int) -> dict:
        session, config = self.session, self.config
        started = time.perf_counter()
        self.model.train()
        sums = session.partial(epoch, {"total": torch.zeros((), device=session.device), "total_cpu": 0.0, "count": 0})
        check_each_step = session.device.type == "cpu"   # a sync per step is free on the CPU, not on a GPU
        dist, batch_size = session.dist, config.data.batch_size
        session.progress.epoch_start(epoch + 1, session.epochs,
                                     self.train_data.num_batches(batch_size, world_size=dist.world_size))
        for i, (inputs, targets) in session.batches(epoch, self.train_data, batch_size, config.data.shuffle, sums):
            self.optimizer.zero_grad(set_to_none=True)
            with self.accel.context():          # autocast (--precision) around forward and loss
                loss = objective_loss(self.objectives, self.net(*inputs), inputs, targets)
            if dist.parallel:       # this rank's share of the global batch's mean loss, times the ranks
                loss = loss * share_of_global_batch(inputs[0].shape[0], i, batch_size, dist.world_size,
                                                    len(self.train_data))
            if check_each_step:
                value = loss.item()
                session.stop_if_not_finite(value, epoch, i)
                sums["total_cpu"] += value
            else:
                sums["total"] += loss.detach()     # summed on the device: no sync per step
            self.accel.backward(loss)          # scaled with fp16
            if config.clip_grad_norm:
                self.accel.unscale(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(config.clip_grad_norm))
            try:
                self.accel.step(self.optimizer)
            except RuntimeError as error:   # e.g. an lr so large the update overflows
                raise TrainingStopped(f"the optimizer step failed at epoch {epoch + 1}, step {i + 1}: {error}; "
                                      f"{session.folder.kept()}") from None
            if self.interval == "step":
                step_scheduler(self.scheduler, None)
            sums["count"] += 1
            session.step += 1
            session.after_step(i + 1, {"train_loss": loss.detach()})
        self.accel.wait()                     # on a GPU, the steps still queued belong to this epoch
        train_seconds = time.perf_counter() - started
        count = sums["count"]
        train_loss = dist.sum(sums["total"].item() + sums["total_cpu"]) / max(count * dist.world_size, 1)
        session.stop_if_not_finite(train_loss, epoch, count - 1)
        row = {"epoch": epoch + 1, "train_loss": train_loss}
        row.update(evaluate_model(self.model, self.test_data, self.objectives, self.metric_names,
                                  self.probability_nodes, dist))
        # the last step left non-finite weights, or the data holds NaN
        session.stop_if_not_finite(row["val_loss"], epoch, count - 1, what="the held-out loss")
        if self.interval == "epoch":
            step_scheduler(self.scheduler, row.get(self.monitor))
        row["lr"] = self.optimizer.param_groups[0]["lr"]
        row["train_seconds"] = round(train_seconds, 3)          # the optimisation alone
        row["seconds"] = round(time.perf_counter() - started, 3)  # with the evaluation
        return row

    def update_best(self, row: dict) -> bool:
        value = row.get(self.monitor)
        best, min_delta = self.session.best, self.config.min_delta
        if value is None or not math.isfinite(value):
            return False
        lower = _lower_is_better(self.monitor)
        if best is None or (value < best["value"] - min_delta if lower else value > best["value"] + min_delta):
            self.session.best = {"metric": self.monitor, "value": value, "epoch": row["epoch"]}
            return True
        return False

    def should_stop(self) -> bool:
        patience, best = self.config.patience, self.session.best
        if not patience or best is None:
            return False
        if self.session.history[-1]["epoch"] - best["epoch"] >= int(patience):
            self.session.progress.note(f"early stopping: {self.monitor} has not improved for {patience} epochs")
            return True
        return False


def _default_monitor(objectives, metric_names) -> str:
    if len(objectives) == 1 and objectives[0].kind == "classification" and "accuracy" in metric_names:
        return "val_accuracy"
    return "val_loss"


def _lower_is_better(metric: str) -> bool:
    return any(word in metric for word in ("loss", "mse", "mae"))
