"""What a run optimises: the losses, the nodes they read, their targets.

A spec's `train.loss` (one loss or a list) becomes Objectives: an instantiated
torch.nn loss, the node it reads (`on:`, default the model's output), the data
target it compares with (`target:`, default by kind: `label` for classifiers,
the input itself for reconstruction), its weight, and its kind, which decides
the metrics it reports and how its output turns into class probabilities.

A classifier's output may hold scores per position: [N, T, C] with labels [N, T]
(a language model's logits and next tokens).  The loss then reads both flattened,
[N*T, C] and [N*T], as nanoGPT does, and the metrics count every position as a
sample; torch's own layout, [N, C, T] with labels [N, T], is kept for the loss and
flattened alike for the metrics.  When both fit (T == C), classes last wins.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import registry
from ..errors import SpecError, did_you_mean
from ..data.tensors import DataError
from ..resolve import resolve_target
from ..spec.loader import format_path
from ..spec.train_config import LossConfig, objective_names

CLASSIFICATION_LOSSES = {"CrossEntropyLoss", "NLLLoss", "MultiMarginLoss"}
BINARY_LOSSES = {"BCELoss", "BCEWithLogitsLoss"}
INPUT_TARGET = "input"      # `target: input` compares with the model's (first) input
PROBABILITY_TYPES = {"softmax", "Softmax", "sigmoid", "Sigmoid"}   # not log_softmax: log-probabilities


def outputs_probabilities(node) -> bool:
    """Whether a graph node's output is already a probability (its loss should not apply one again)."""
    return node is not None and node.type in PROBABILITY_TYPES


def probability_nodes(objectives: list, graph) -> set:
    """The nodes read by the objectives that already output probabilities."""
    return {o.on for o in objectives if outputs_probabilities(graph.nodes.get(o.on))}


@dataclass
class Objective:
    name: str               # how metrics are prefixed when there are several: the node's name (objective_names)
    loss: torch.nn.Module
    type: str
    on: str
    target: str
    weight: float
    kind: str               # "classification", "binary", "regression" or "reconstruction"

    def probabilities(self, output: torch.Tensor, output_is_probability: bool) -> torch.Tensor | None:
        """Class probabilities for ROC-AUC, from what the loss reads (classes in dim 1: see `per_sample`)."""
        if self.kind == "classification":
            if output_is_probability:
                return output
            return output.exp() if self.type == "NLLLoss" else torch.softmax(output, dim=1)
        if self.kind == "binary":
            return output if self.type == "BCELoss" else torch.sigmoid(output)
        return None

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.kind == "classification" and class_layout(output.shape, target.shape) == "last":
            return self.loss(output.reshape(-1, output.shape[-1]), target.reshape(-1).long())
        return self.loss(output, fit_target(output, target, self.kind))

    def per_sample(self, output: torch.Tensor, target: torch.Tensor) -> tuple:
        """(output, target) for the metrics, positions folded into samples: a classifier's
        per-position scores become [N*T, C] with labels [N*T], a binary loss's several outputs
        per sample one column [N*k, 1] with labels [N*k]; other outputs are returned as given."""
        if self.kind == "classification":
            layout = class_layout(output.shape, target.shape)
            if layout == "second":
                output = output.movedim(1, -1)
            if layout in ("last", "second"):
                return output.reshape(-1, output.shape[-1]), target.reshape(-1)
        elif self.kind == "binary" and output.dim() > 1 and output.numel() == target.numel():
            return output.reshape(-1, 1), target.reshape(-1)
        return output, target


def class_layout(output_shape, target_shape) -> str | None:
    """Where a classifier's output (batch first) holds its classes, judged by its labels' shape:
    "plain" for scores [N, C] and labels [N] or [N, 1]; "last" for scores per position
    [N, ..., C] and labels [N, ...]; "second" for torch's own layout [N, C, ...] with labels
    [N, ...]; None when the labels fit none of them."""
    out, labels = tuple(output_shape), tuple(target_shape)
    if len(out) == 2:
        return "plain" if labels in (out[:1], out[:1] + (1,)) else None
    if len(out) > 2 and labels == out[:-1]:
        return "last"
    if len(out) > 2 and labels == out[:1] + out[2:]:
        return "second"
    return None


def fit_target(output: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """The target in the form the loss wants: class ids for classifiers, else the output's shape."""
    if kind == "classification":
        return target.reshape(-1).long() if target.dim() > 1 and target.shape[-1] == 1 else target.long()
    target = target.to(output.dtype)
    if target.shape != output.shape and target.numel() == output.numel():
        target = target.reshape(output.shape)   # [N] vs [N, 1]; images [N, 1, 28, 28] vs [N, 784]
    return target


def build_objectives(config, graph, data_info: dict) -> list[Objective]:
    """The objectives of a run's TrainConfig, for the network `graph`, given the data set's info."""
    losses = config.losses or (_default_loss(config.task, data_info),)
    outputs = graph.output_names()
    targets = data_info.get("targets") or {}
    objectives = []
    reads = []
    for entry in losses:
        on = entry.on
        if on is None:
            if len(outputs) != 1:
                raise SpecError(f"the model has {len(outputs)} outputs, so {entry.type} needs `on:`",
                                path=format_path(entry.path), hint="name the node it reads: " + ", ".join(outputs))
            on = outputs[0]
        kind = _kind(entry.type, entry.target, config.task)
        target = entry.target or _default_target(kind, targets)
        if target != INPUT_TARGET and targets and target not in targets:
            raise SpecError(f"the data has no target {target!r}", path="train.loss",
                            hint=did_you_mean(target, targets) or "its targets: " + ", ".join(targets)
                            + ", or `input` for reconstruction")
        objectives.append(make_objective(entry, on, target, kind))
        reads.append((on, entry.target))
    for objective, name in zip(objectives, objective_names(reads)):
        objective.name = name
    return objectives


def make_objective(entry: LossConfig, on: str, target: str, kind: str) -> Objective:
    """An Objective for one loss entry: its torch loss built with the entry's own arguments."""
    args = {k: (tuple(v) if isinstance(v, list) else v) for k, v in entry.args.items()}
    loss = resolve_target(registry.CATALOG["losses"][entry.type]["target"])(**args)
    return Objective(on, loss, entry.type, on, target, entry.weight, kind)


def target_of(objective: Objective, inputs: list, targets: dict) -> torch.Tensor:
    """What an objective compares with: a data target, or the model's first input (reconstruction)."""
    return inputs[0] if objective.target == INPUT_TARGET else targets[objective.target]


def objective_loss(objectives: list[Objective], outputs: dict, inputs: list, targets: dict) -> torch.Tensor:
    """The weighted sum of the objectives' losses for one batch: what training minimises and
    evaluation reports.  `outputs` maps each objective's node to its output."""
    total = None
    for o in objectives:
        term = o(outputs[o.on], target_of(o, inputs, targets)) * o.weight
        total = term if total is None else total + term
    return total


def _default_loss(task, data_info) -> LossConfig:
    if task in ("regression", "reconstruction") or data_info.get("task_hint") == "regression":
        return LossConfig("MSELoss")
    return LossConfig("CrossEntropyLoss")


def _kind(type_name: str, target, task) -> str:
    if target == INPUT_TARGET or task == "reconstruction":
        return "reconstruction"
    if type_name in CLASSIFICATION_LOSSES:
        return "classification"
    if type_name in BINARY_LOSSES:
        return "binary"
    return "regression"


def _default_target(kind: str, targets: dict) -> str:
    if kind == "reconstruction":
        return INPUT_TARGET
    if len(targets) == 1:
        return next(iter(targets))
    preferred = ("label",) if kind in ("classification", "binary") else ("y", "target")
    for name in preferred:
        if name in targets:
            return name
    return next(iter(targets), "label")


def infer_task(config, objectives: list[Objective]) -> str:
    if config.task:
        return config.task
    if len(objectives) > 1:
        return "multi_output"
    return {"binary": "classification"}.get(objectives[0].kind, objectives[0].kind)


def check_labels(objectives: list[Objective], shapes: dict, bundle) -> None:
    """Class labels must fit the scores the loss reads, one per sample or one per position, and
    index them; else the loss fails mid-epoch (or, with T == C, trains on the wrong thing)."""
    for o in objectives:
        if o.kind != "classification" or o.target not in bundle.train.targets:
            continue
        output = shapes[o.on].output
        output = output if isinstance(output, tuple) and all(isinstance(d, int) for d in output[1:]) else None
        classes = None if output is None or len(output) < 2 else \
            _check_label_shape(o, output, bundle.train.targets[o.target])
        labels = [t for t in (bundle.train.targets[o.target], bundle.test.targets[o.target]) if t.numel()]
        if classes is None or not labels:
            continue
        top = max(int(t.max()) for t in labels)
        low = min(int(t.min()) for t in labels)
        if top >= classes or low < 0:
            raise DataError(f"the data's {o.target!r} labels run from {low} to {top}, but {o.on!r} gives "
                            f"{classes} class scores (labels 0 to {classes - 1})",
                            hint=f"give {o.on!r} {top + 1} outputs, or use data whose labels fit")


def _check_label_shape(o: Objective, output: tuple, labels: torch.Tensor) -> int:
    """The number of classes of a classifier's output (batch first, e.g. ("N", T, C)), after
    checking that its labels give one class per sample or per position; a DataError naming both
    shapes if not."""
    layout = class_layout((labels.shape[0], *output[1:]), labels.shape)
    if layout is not None:
        return output[1] if layout in ("plain", "second") else output[-1]
    scores, positions, got = list(output[1:]), list(output[1:-1]), list(labels.shape[1:])
    classes = f"{output[-1]} classes at each of {positions} positions" if positions else f"{output[-1]} classes"
    want = f"labels of shape {positions} (a class id per position)" if positions else "one class id per sample"
    labels_are = f"{got} per sample" if got else "a single class id per sample"
    raise DataError(f"{o.type} reads {o.on!r}, whose class scores are {scores} per sample ({classes}), but the "
                    f"data's {o.target!r} labels are {labels_are}",
                    hint=f"give {want}, or make {o.on!r} give scores [{', '.join(str(d) for d in [*got, 'C'])}]")
