"""One trial: a normal training run of the spec with the trial's values, judged by one metric.

The run gets its own run folder (trials/NNN/, with the spec.yaml it ran) and writes its epoch
lines into train.log there.  After each epoch the metric is reported to Optuna, whose pruner may
stop the run (`PruneReporter`).  A run that fails (a NaN loss, a shape error from a sampled
width, anything else) fails its trial, with its message kept as the trial's `error`, and the
study goes on; Ctrl-C stops the study.
"""
from __future__ import annotations

import math
import os
import socket

import optuna

from ..errors import SpecError
from ..spec.tune_checks import TuneConfig
from ..training.progress import Progress
from ..training.session import TrainingStopped
from ..training.trainer import train
from .space import suggest


class TrialFailed(Exception):
    """The trial's run failed; Optuna marks the trial FAIL and the study goes on."""


class MetricMissing(Exception):
    """The run reports no column named tune.metric: every trial would fail alike, so the study stops."""

    def __init__(self, error: SpecError):
        super().__init__(str(error))
        self.error = error


class PruneReporter:
    """An observer of the run (see training/session.py): reports the metric after every epoch, keeps
    the best value, and stops the run when the pruner says the trial is worse than the others."""

    def __init__(self, trial, config: TuneConfig, spec):
        self.trial, self.metric, self.spec = trial, config.metric, spec
        self.maximize = config.direction == "maximize"
        self.best: float | None = None
        self.epochs = 0

    def epoch_end(self, session, loop, row: dict) -> None:
        if self.metric not in row:
            columns = ", ".join(k for k in row if k not in ("epoch", "lr", "seconds", "train_seconds"))
            self.trial.set_user_attr("error", f"the run reports no column {self.metric!r}")
            raise MetricMissing(SpecError([self.spec.problem(f"the runs report no column {self.metric!r}",
                                                             ("tune", "metric"), hint=f"they report: {columns}")]))
        value, epoch = float(row[self.metric]), int(row["epoch"])
        if not math.isfinite(value):
            return                  # an undefined score (roc_auc of one class) is no step of the curve
        self.epochs += 1
        if self.best is None or (value > self.best if self.maximize else value < self.best):
            self.best = value
        self.trial.report(value, step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch}: {self.metric} {value:.4f}")


class TrialRunner:
    """Optuna's objective: one trial's values -> one training run -> its value (the best the
    metric reached over the run's epochs)."""

    def __init__(self, spec, config: TuneConfig, folder, options: dict):
        self.spec, self.config, self.folder, self.options = spec, config, folder, options

    def __call__(self, trial) -> float:
        params = suggest(trial, self.config)
        for key, value in (("run", self.folder.run_name(trial.number)), ("host", socket.gethostname()),
                           ("pid", os.getpid())):
            trial.set_user_attr(key, value)      # --resume fails a trial whose process is gone
        out = self.folder.trial_dir(trial.number)
        out.mkdir(parents=True, exist_ok=True)
        reporter = PruneReporter(trial, self.config, self.spec)
        options = self.options
        overrides = {**(options.get("overrides") or {}), **params}
        with open(out / "train.log", "w", encoding="utf-8") as log:
            try:
                train(self.spec, overrides=overrides, out=str(out), data=options.get("data"),
                      data_root=options.get("data_root"), limit=options.get("limit"), epochs=options.get("epochs"),
                      device=options.get("device"), progress=Progress(log, live=False), observers=[reporter])
            except optuna.TrialPruned as pruned:
                log.write(f"trial {pruned}\n")          # the run's own log says why it ended early
                raise
            except MetricMissing:
                raise
            except TrainingStopped as stop:
                if stop.exit_code == 130:
                    self._fail(trial, log, "interrupted (Ctrl-C)", raise_=False)
                    raise KeyboardInterrupt from None
                self._fail(trial, log, str(stop))
            except KeyboardInterrupt:
                self._fail(trial, log, "interrupted (Ctrl-C)", raise_=False)
                raise
            except SpecError as error:
                self._fail(trial, log, str(error))
            except Exception as error:        # torch's own errors (out of memory, a kernel refusing a size)
                self._fail(trial, log, f"{type(error).__name__}: {error}")
        if reporter.best is None:
            self._fail(trial, None, f"{self.config.metric} was never a finite number")
        return reporter.best

    @staticmethod
    def _fail(trial, log, message: str, raise_: bool = True) -> None:
        trial.set_user_attr("error", message)
        if log is not None:
            log.write(f"trial failed: {message}\n")
        if raise_:
            raise TrialFailed(message)


def trial_line(trial, config: TuneConfig) -> str:
    """One line per finished trial: its number, state, value, values and time."""
    state = trial.state.name
    value = f" {config.metric} {trial.value:.4f}" if trial.value is not None else ""
    params = ", ".join(f"{k}={format_value(v)}" for k, v in trial.params.items())
    seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() \
        if trial.datetime_complete and trial.datetime_start else None
    took = f" ({seconds:.1f} s)" if seconds is not None else ""
    error = trial.user_attrs.get("error")
    tail = f": {error.splitlines()[0][:160]}" if state == "FAIL" and error else ""
    return f"trial {trial.number}: {state}{value} [{params}]{took}{tail}"


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
