"""A spec's `tune:` section: its schema, read into typed configuration, and checked.

`specbuild tune` (specbuild/tune/) samples the values of `space:` and trains one run per
trial.  So that no trial starts with a value its spec refuses, every entry is checked
like the rest of the spec when it is validated: each choice, and each end of a range, is
applied as an override (as `--set` would) and the spec checked with it.  Its errors are
reported at the tune entry's line, since that is where the value is written.  A value
that fails only together with another entry's value still fails its trial, not the study.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .. import registry
from ..errors import Problem, SpecError, did_you_mean
from .source_map import Spec
from .train_config import objective_names

KINDS = ("loguniform", "uniform", "int", "choice")
# pruner -> the options it takes (Optuna's arguments of the same names)
PRUNERS = {"median": ("n_startup_trials", "n_warmup_steps", "interval_steps", "n_min_trials"),
           "none": (),
           "successive_halving": ("min_resource", "reduction_factor", "min_early_stopping_rate"),
           "hyperband": ("min_resource", "max_resource", "reduction_factor")}
SAMPLERS = {"tpe": ("seed", "n_startup_trials"), "random": ("seed",), "grid": ("seed",)}
DEFAULT_TRIALS = 20
GAN_COLUMNS = ("d_loss", "g_loss", "d_real", "d_fake")
EXAMPLE = "e.g. tune: {metric: val_accuracy, space: {train.optimizer.lr: {loguniform: [1.0e-4, 1.0e-2]}}}"


def tune_schema() -> dict:
    """The schema of `tune:`: each value's kind; the relations between values are checked below."""
    count = {"type": "integer", "minimum": 0}
    pair = {"type": "array", "items": {"type": "number"}}
    resource = {"anyOf": [{"type": "integer", "minimum": 1}, {"const": "auto"}]}
    pruner_options = {"n_startup_trials": count, "n_warmup_steps": count,
                      "interval_steps": {"type": "integer", "minimum": 1}, "n_min_trials": {"type": "integer", "minimum": 1},
                      "min_resource": resource, "max_resource": resource,
                      "reduction_factor": {"type": "integer", "minimum": 2}, "min_early_stopping_rate": count}
    entry = {"type": "object", "additionalProperties": False,
             "properties": {"loguniform": pair, "uniform": pair, "int": {"type": "array", "items": {"type": "integer"}},
                            "choice": {"type": "array", "items": {"type": ["number", "string", "boolean", "null"]}},
                            "step": {"type": "number", "exclusiveMinimum": 0}, "log": {"type": "boolean"}}}
    return {"type": "object", "additionalProperties": False, "required": ["metric", "space"],
            "description": "A hyperparameter search: `specbuild tune` (docs/tuning.md).",
            "properties": {
                "metric": {"type": "string", "description": "The column each trial is judged by, e.g. val_accuracy."},
                "direction": {"enum": ["maximize", "minimize"]},
                "trials": {"type": "integer", "minimum": 1},
                "timeout": {"type": "number", "exclusiveMinimum": 0,
                            "description": "Seconds after which no new trial starts."},
                "sampler": {"anyOf": [{"type": "string", "enum": list(SAMPLERS)}, {
                    "type": "object", "required": ["type"], "additionalProperties": False,
                    "properties": {"type": {"enum": list(SAMPLERS)}, "seed": {"type": "integer"},
                                   "n_startup_trials": count}}]},
                "pruner": {"anyOf": [{"type": "string", "enum": list(PRUNERS)}, {
                    "type": "object", "required": ["type"], "additionalProperties": False,
                    "properties": {"type": {"enum": list(PRUNERS)}, **pruner_options}}]},
                "space": {"type": "object", "minProperties": 1, "additionalProperties": entry,
                          "description": "A param's name or a value's dotted path -> its distribution."}}}


@dataclass(frozen=True)
class Dimension:
    """One entry of `space:`: the override key it sets, and how its values are drawn."""
    key: str                     # a param name (hidden) or a dotted path (train.optimizer.lr)
    kind: str                    # one of KINDS
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple = ()

    @property
    def path(self) -> tuple:
        return ("tune", "space", self.key)

    def probes(self) -> list[tuple[object, tuple]]:
        """(value, its place in the spec) of the values validation tries: every choice, each end of a range."""
        if self.kind == "choice":
            return [(value, self.path + ("choice", i)) for i, value in enumerate(self.choices)]
        high = self.high
        if self.step:            # the highest value the steps reach
            high = self.low + math.floor((self.high - self.low) / self.step + 1e-9) * self.step
            high = int(high) if self.kind == "int" else high
        return [(self.low, self.path + (self.kind, 0)), (high, self.path + (self.kind, 1))]


@dataclass(frozen=True)
class TuneConfig:
    metric: str
    direction: str               # "maximize" or "minimize"
    trials: int
    timeout: float | None = None
    sampler: str = "tpe"
    sampler_options: dict = field(default_factory=dict)
    pruner: str = "median"
    pruner_options: dict = field(default_factory=dict)
    space: tuple = ()            # Dimensions

    @property
    def grid_size(self) -> int:
        return math.prod(len(d.choices) for d in self.space) if all(d.kind == "choice" for d in self.space) else 0


def default_direction(metric: str) -> str:
    """A loss or an error is minimised, anything else (accuracy, f1, r2) maximised."""
    return "minimize" if any(word in metric for word in ("loss", "mse", "mae")) else "maximize"


def parse_tune(section: dict, spec: Spec, problems: list[Problem]) -> TuneConfig:
    """The typed `tune:` section of a schema-checked spec; its problems are added to `problems`."""
    metric = section["metric"]
    direction = section.get("direction") or default_direction(metric)
    sampler, sampler_options = _named(section.get("sampler", "tpe"))
    pruner, pruner_options = _named(section.get("pruner", "median"))
    for key in pruner_options:
        if key not in PRUNERS[pruner]:
            takes = ", ".join(PRUNERS[pruner]) or "no options"
            problems.append(spec.problem(f"the {pruner} pruner has no option {key!r}", ("tune", "pruner", key),
                                         hint=did_you_mean(key, PRUNERS[pruner]) or f"it takes: {takes}"))
    for key in sampler_options:
        if key not in SAMPLERS[sampler]:
            problems.append(spec.problem(f"the {sampler} sampler has no option {key!r}", ("tune", "sampler", key),
                                         hint=f"it takes: {', '.join(SAMPLERS[sampler])}"))
    space = tuple(d for d in (_dimension(key, entry, spec, problems) for key, entry in section["space"].items()) if d)
    config = TuneConfig(metric, direction, int(section.get("trials") or DEFAULT_TRIALS), section.get("timeout"),
                        sampler, sampler_options, pruner, pruner_options, space)
    if sampler == "grid":
        ranged = [d.key for d in space if d.kind != "choice"]
        if ranged:
            problems.append(spec.problem(f"the grid sampler tries every combination of choices, and {ranged[0]!r} "
                                         "is a range", ("tune", "sampler"),
                                         hint="give it a `choice:` list, or use the tpe or random sampler"))
        elif "trials" not in section:
            config = TuneConfig(**{**config.__dict__, "trials": config.grid_size})
        elif config.trials > config.grid_size:
            problems.append(spec.problem(f"tune.trials is {config.trials}, and the grid has {config.grid_size} "
                                         "combinations: some would run twice", ("tune", "trials"),
                                         hint=f"give trials: {config.grid_size} or fewer, or leave it out"))
    return config


def _named(value) -> tuple[str, dict]:
    """`median` or `{type: median, n_startup_trials: 2}` -> ("median", {"n_startup_trials": 2})."""
    if isinstance(value, dict):
        return value["type"], {k: v for k, v in value.items() if k != "type"}
    return value, {}


def _dimension(key: str, entry: dict, spec: Spec, problems: list[Problem]) -> Dimension | None:
    path = ("tune", "space", key)
    kinds = [k for k in KINDS if k in entry]
    if len(kinds) != 1:
        what = "no distribution" if not kinds else f"{len(kinds)} distributions ({', '.join(kinds)})"
        problems.append(spec.problem(f"the search space entry {key!r} has {what}", path,
                                     hint="give exactly one of: " + ", ".join(f"{k}: ..." for k in KINDS)))
        return None
    kind, found = kinds[0], len(problems)
    values = entry[kind]
    extra = [k for k in ("step", "log") if k in entry and not (kind == "int" or (k == "step" and kind == "uniform"))]
    for k in extra:
        problems.append(spec.problem(f"`{k}` does not go with {kind}", path + (k,),
                                     hint="log: true is for int ranges (loguniform is the log range of floats); "
                                          "step for int and uniform" if k == "log" else "step is for int and uniform"))
    if kind == "choice":
        if not values:
            problems.append(spec.problem(f"the choice of {key!r} is empty: there is nothing to try", path + (kind,),
                                         hint="list the values to try, e.g. choice: [64, 128]"))
        return None if len(problems) > found else Dimension(key, kind, choices=tuple(values))
    if len(values) != 2:
        problems.append(spec.problem(f"{kind} of {key!r} takes [low, high], not {len(values)} values", path + (kind,),
                                     hint=f"e.g. {kind}: [1, 10]" if kind == "int" else f"e.g. {kind}: [1.0e-4, 1.0e-1]"))
        return None
    low, high = values
    if not all(math.isfinite(v) for v in values):
        problems.append(spec.problem(f"{kind} of {key!r} must be finite numbers", path + (kind,)))
    elif low >= high:
        problems.append(spec.problem(f"{kind} of {key!r}: low {low} must be below high {high}", path + (kind,),
                                     hint=f"write [low, high], e.g. {kind}: [{high}, {low}]" if low > high else
                                     f"to fix it at {low}, leave {key!r} out of the space (or use choice: [{low}])"))
    elif (kind == "loguniform" or entry.get("log")) and low <= 0:
        problems.append(spec.problem(f"{kind} of {key!r} is drawn on a log scale, so its low end must be above 0, "
                                     f"not {low}", path + (kind, 0), hint="e.g. [1.0e-5, 1.0e-1]; or use uniform"))
    step = entry.get("step")
    if kind == "int" and step is not None and (not float(step).is_integer() or (entry.get("log") and step != 1)):
        problems.append(spec.problem(f"int of {key!r}: step must be a whole number, and 1 with log: true, not {step}",
                                     path + ("step",), hint="e.g. step: 2"))
    if len(problems) > found:
        return None
    step = (int(step) if kind == "int" else float(step)) if step is not None else None
    return Dimension(key, kind, low, high, step, bool(entry.get("log")))


def metric_columns(checked) -> set[str]:
    """The metric columns a run of the checked spec may report (docs/training.md#metric-names)."""
    train = checked.train
    if train.is_gan:
        return set(GAN_COLUMNS)
    metrics = train.metrics or registry.METRIC_NAMES
    if len(train.losses) > 1:       # a loss without on: reads the model's only output
        graphs = list(checked.graphs.networks.values())
        only = graphs[0].output_names()[0] if len(graphs) == 1 and len(graphs[0].output_names()) == 1 else None
        names = objective_names([(loss.on or only, loss.target) for loss in train.losses])
        return {"train_loss", "val_loss"} | {f"val_{name}_{m}" for name in names for m in ("loss", *metrics)}
    return {"train_loss", "val_loss"} | {f"val_{m}" for m in metrics}


def without_tune(spec: Spec) -> Spec:
    """The spec as one trial trains it: no `tune:` section, positions as in the file."""
    data = {k: v for k, v in spec.data.items() if k != "tune"}
    return Spec(data, spec.file, spec.positions, spec.text)


def trial_overrides(overrides: dict) -> dict:
    """The overrides a trial's run applies: not those of the tune section, which no trial has."""
    return {k: v for k, v in (overrides or {}).items() if k.split(".")[0] != "tune"}


def tune_problems(checked, overrides: dict, check, shapes: bool = True) -> list[Problem]:
    """Every problem of the checked spec's `tune:` section.  `check` is spec/validate.py's, passed in
    so that this module does not import the module that calls it."""
    spec, section = checked.spec, checked.data.get("tune")
    if not isinstance(section, dict):
        return []
    problems: list[Problem] = []
    config = parse_tune(section, spec, problems)
    columns = metric_columns(checked)
    if config.metric not in columns:
        listed = "" if checked.train.is_gan or not checked.train.metrics else " (train.metrics lists what it reports)"
        problems.append(spec.problem(f"{config.metric!r} is no column a run of this spec reports{listed}",
                                     ("tune", "metric"), hint=did_you_mean(config.metric, columns)
                                     or "e.g. " + ", ".join(sorted(columns)[:6])))
    elif section.get("direction") and section["direction"] != default_direction(config.metric):
        problems.append(spec.problem(f"{section['direction']} {config.metric}? That keeps the worst "
                                     "trials", ("tune", "direction"), severity="warning",
                                     hint=f"{default_direction(config.metric)} is the usual way for it"))
    base, overrides = without_tune(spec), trial_overrides(overrides)
    for dim in config.space:
        if dim.key.split(".")[0] == "tune":
            problems.append(spec.problem(f"{dim.key!r} is in the tune section itself, which no trial reads",
                                         dim.path, hint="tune values of the model or of train:"))
        else:
            problems += _value_problems(dim, base, overrides, check, shapes)
    return problems


def _value_problems(dim: Dimension, base: Spec, overrides: dict, check, shapes: bool) -> list[Problem]:
    """The spec checked with each of the entry's probe values; a problem every value gives is about the
    key (it names nothing), reported once; one only some values give names the value."""
    spec = base             # its positions are the whole file's, the tune entries' included
    failures = []
    for value, where in dim.probes():
        try:
            check(base, overrides={**overrides, dim.key: value}, shapes=shapes)
        except SpecError as error:
            failures.append((value, where, [p for p in error.problems if p.severity == "error"]))
    if not failures:
        return []
    messages = [[_inner(p, dim.key) for p in errors] for _, _, errors in failures]
    if len(failures) == len(dim.probes()) > 1 and all(m == messages[0] for m in messages):
        return [spec.problem(f"{dim.key!r} cannot be tuned: {text}", dim.path, hint=hint) for text, hint in messages[0]]
    return [spec.problem(f"{dim.key} = {value!r} makes the spec invalid: {text}", where,
                         hint=hint or "choose values the spec accepts")
            for (value, where, _), found in zip(failures, messages) for text, hint in found[:3]]


def _inner(problem: Problem, key: str) -> tuple[str, str | None]:
    """A problem of the spec checked with one value, in words for the tune entry: what and where."""
    text = problem.message
    if text.startswith(f"--set {key}="):          # about the override itself: the key names nothing
        text = text.split(": ", 1)[1] if ": " in text else text
    elif problem.path:
        node = f" ({problem.node})" if problem.node else ""
        line = f", line {problem.line}" if problem.line is not None else ""
        text = f"{problem.path}{node}{line}: {text}"
    return text, problem.hint
