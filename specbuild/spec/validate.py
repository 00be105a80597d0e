"""Validation: the schema, then the graph, then shapes — every problem, pinpointed.

`check()` runs every stage it can and raises one SpecError listing all errors
found (warnings ride along); later stages run only where earlier ones leave
well-formed data, so one typo does not cascade into a page of noise.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Problem, SpecError
from .graph import SpecGraphs, ancestors_of_outputs, build_graphs
from .loader import Spec, load_spec
from .node_checks import args_of, node_problems, relation_problems, schema_problems
from .schema_errors import node_name, wide_integers
from .train_config import TrainConfig, parse_train
from .tune_checks import tune_problems
from .variables import apply_overrides, substitute


@dataclass
class Checked:
    spec: Spec                      # as loaded (positions refer to it)
    data: dict                      # overrides applied, variables substituted
    graphs: SpecGraphs
    shapes: dict = field(default_factory=dict)     # network -> {node: Inferred}, filled by shape inference
    warnings: list[Problem] = field(default_factory=list)
    expanded_nodes: int = 0         # layers shape inference visited, blocks expanded
    train: TrainConfig = field(default_factory=TrainConfig)    # the typed `train:` section
    instances: dict = field(default_factory=dict)   # (block, its param values) -> Graph or None (spec/blocks.py)


def validate(spec, *, overrides: dict | None = None, shapes: bool = True) -> list[Problem]:
    """Check a spec (path, text, dict or Spec); return its warnings or raise SpecError with all errors."""
    return check(spec, overrides=overrides, shapes=shapes).warnings


def check(spec, *, overrides: dict | None = None, shapes: bool = True) -> Checked:
    spec = load_spec(spec)
    problems: list[Problem] = []
    data = apply_overrides(spec.data, overrides) if overrides else spec.data
    data = substitute(data, spec, problems)
    problems += wide_integers(data, spec)
    # the schema's errors for a bad variable or too wide an integer (or the list holding it) repeat them
    covered = {p.key for p in problems} | {p.key[:-1] for p in problems if p.key and isinstance(p.key[-1], int)}
    problems += [p for p in schema_problems(data, spec) if p.key not in covered]
    graphs = SpecGraphs({}, {})
    if not problems:
        graphs = build_graphs(data, spec, problems)
    else:   # still report unknown types, dangling `in:` and cycles, where the structure allows
        try:
            graphs = build_graphs(data, spec, problems)
        except (TypeError, AttributeError, KeyError, ValueError, IndexError):
            pass
    checked = Checked(spec, data, graphs)
    if not problems:
        problems += semantic_problems(checked)
    # a warning (a layer no output uses) must not stop the later stages: only errors do
    if not _has_errors(problems) and shapes:
        from .infer import infer_shapes   # shape rules: pure Python, no torch
        problems += infer_shapes(checked)
    if not _has_errors(problems):
        from .lint import lint
        problems += lint(checked)
    if not _has_errors(problems) and "tune" in data:     # each search-space value, checked as an override
        problems += tune_problems(checked, overrides or {}, check, shapes)
    for problem in problems:
        if problem.node is None:
            problem.node = node_name(data, problem.key)[0]
    errors = [p for p in problems if p.severity == "error"]
    checked.warnings = [p for p in problems if p.severity != "error"]
    if errors:
        raise SpecError(_sorted(errors) + checked.warnings)
    return checked


def _has_errors(problems: list[Problem]) -> bool:
    return any(p.severity == "error" for p in problems)


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.line or 0, p.column or 0))


def semantic_problems(checked: Checked) -> list[Problem]:
    """What the schema cannot say: arity, nested layers, train references, unreachable layers.
    A block with params is checked where it is used, with its values (spec/blocks.py)."""
    spec, data, graphs = checked.spec, checked.data, checked.graphs
    problems: list[Problem] = []
    for graph in list(graphs.networks.values()) + list(graphs.blocks.values()):
        if not graph.params:
            problems += node_problems(graph, graphs, spec)
        needed = ancestors_of_outputs(graph)
        for node in graph.nodes.values():
            if node.name not in needed:
                problems.append(spec.problem("layer is not used by any output", node.path, node=node.name,
                                             hint="wire it with `in:` or list it in `outputs:`", severity="warning"))
    for key, entry in (data.get("train") or {}).items():
        if key in ("optimizer", "scheduler") and isinstance(entry, dict):
            problems += relation_problems(entry["type"], args_of(entry), ("train", key), entry["type"], spec)
    checked.train = parse_train(data.get("train"), graphs, spec, problems)
    return problems
