"""Blocks with params: one graph per distinct set of arguments.

`{name: layer2, type: BasicBlock, planes: 128, stride: 2}` passes `planes` and
`stride` to the block's `params:`; the block's `${...}` that read them, and the
`when:` they decide, are known only here, at each use.  An instance is the block's
data with the values put in, checked like any graph (argument schemas, arity,
nested layers) at the block's own lines, and cached per block and values, so a
block used many times with the same arguments is built and checked once.
"""
from __future__ import annotations

import json

from ..errors import Problem, did_you_mean
from .graph import Graph, Node, block_graph, _check_types
from .node_checks import node_problems, schema_problems
from .variables import REQUIRED, instantiate


def block_instance(checked, type_name: str, args: dict, node: Node, problems: list[Problem]) -> Graph | None:
    """The graph of block `type_name` as `node` uses it with `args`; None (and problems at
    the node's line) when the arguments or the instance are wrong."""
    template = checked.graphs.blocks[type_name]
    spec = checked.spec
    wrong = _argument_problems(template, type_name, args, node, spec)
    if wrong:
        problems += wrong
        return None
    if not template.params:
        return template
    values = {name: args.get(name, default) for name, default in template.params.items()}
    key = (type_name, json.dumps(values, sort_keys=True, default=repr))
    if key in checked.instances:
        return checked.instances[key]
    found: list[Problem] = []
    spec_params = checked.data.get("params") if isinstance(checked.data.get("params"), dict) else {}
    body = instantiate(checked.graphs.bodies[type_name], {**spec_params, **values}, ("blocks", type_name), spec, found)
    if not found:
        found += schema_problems({"blocks": {type_name: body}}, spec, block=type_name)
    graph = block_graph(type_name, body, spec, found) if not found else None
    if graph is not None:
        _check_types(graph, set(checked.graphs.blocks), spec, found)
        if not found:
            found += node_problems(graph, checked.graphs, spec)
    errors = [p for p in found if p.severity == "error"]
    if errors:
        problems += errors
        problems.append(spec.problem(f"block {type_name!r} with {_shown(values)} is wrong (see above)", node.path,
                                     node=node.name, hint="the errors above are in the block, with these values"))
        graph = None
    checked.instances[key] = graph
    return graph


def _argument_problems(template: Graph, type_name: str, args: dict, node: Node, spec) -> list[Problem]:
    """Unknown arguments, and params without a default that the use does not give."""
    problems = []
    for arg in args:
        if arg not in template.params:
            known = ", ".join(template.params) or "none"
            problems.append(spec.problem(f"block {type_name!r} has no param {arg!r}", _arg_path(node, arg),
                                         node=node.name,
                                         hint=did_you_mean(arg, template.params) or f"its params: {known}"
                                         + ("" if template.params else
                                            f"; declare it under blocks.{type_name}.params to pass it")))
    for name, default in template.params.items():
        if default is REQUIRED and name not in args:
            problems.append(spec.problem(f"block {type_name!r} needs its param {name!r} (it has no default)",
                                         node.path, node=node.name, hint=f"add `{name}: ...` to the layer"))
    return problems


def _arg_path(node: Node, arg: str) -> tuple:
    """Where an argument is written: the layer's own key, or a copy's under `repeat:`."""
    if arg in node.args:
        return node.path + (arg,)
    for i, copy in enumerate(node.copies or ()):
        if arg in copy:
            return node.path + ("repeat", i, arg)
    return node.path


def with_values(graph: Graph, args: dict) -> str:
    """" with planes=128, stride=2" for a block with params (all of them, defaults included)."""
    if not graph.params:
        return ""
    return " with " + _shown({name: args.get(name, default) for name, default in graph.params.items()})


def _shown(values: dict) -> str:
    return ", ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in values.items()) or "no params"
