"""`tie:`: a layer's parameter made the same tensor as another layer's.

`{name: lm_head, type: Linear, bias: false, tie: {weight: wte.weight}}` is GPT's
weight tying.  Shapes are checked here, before any weight exists; the built model
then holds one tensor under both names (`state_dict` keeps both keys, as torch
does for tied weights), and the parameter is counted once.
"""
from __future__ import annotations

import math

from ..errors import Problem, did_you_mean
from ..shapes.core import format_shape


def check_ties(graph, results: dict, spec, problems: list[Problem]) -> None:
    """Check every `tie:` of `graph` against the inferred `results`, and count a tied
    parameter once (on the layer it is tied to)."""
    for node in graph.nodes.values():
        if not node.tie or node.name not in results:
            continue
        if node.repeat > 1:
            problems.append(spec.problem("a repeated layer cannot tie its parameters: each copy would be the same",
                                         node.path + ("tie",), node=node.name, hint="tie a single layer"))
            continue
        own = results[node.name]
        for param, source in node.tie.items():
            where = node.path + ("tie", param)
            if param not in own.param_shapes:
                problems.append(spec.problem(f"{node.type} {node.name!r} has no parameter {param!r} to tie", where,
                                             node=node.name, hint=did_you_mean(param, own.param_shapes)
                                             or "its parameters: " + (", ".join(own.param_shapes) or "none")))
                continue
            found, why = param_shape(graph, results, source)
            if found is None:
                problems.append(spec.problem(f"`tie:` names {source!r}, {why}", where, node=node.name,
                                             hint="name a layer of this graph and one of its parameters: wte.weight"))
            elif tuple(found) != tuple(own.param_shapes[param]):
                problems.append(spec.problem(
                    f"{node.name}.{param} is {format_shape(own.param_shapes[param])} but {source} is "
                    f"{format_shape(found)}: tied parameters are one tensor, so their shapes must be equal",
                    where, node=node.name, hint="change the layers' sizes so the two shapes agree"))
            else:
                own.params -= math.prod(found)


def param_shape(graph, results: dict, path: str):
    """(shape, None) of the parameter `layer.param` (or `block_layer.inner.param`), or (None, why)."""
    first, _, rest = path.partition(".")
    if first not in graph.nodes:
        close = did_you_mean(first, graph.nodes)
        return None, f"and {first!r} is no layer" + (f" ({close})" if close else "")
    if first not in results:
        return None, f"and {first!r} has no shapes (see its error)"
    shape = results[first]
    while True:
        if rest in shape.param_shapes:
            return shape.param_shapes[rest], None
        head, _, tail = rest.partition(".")
        if not tail or head not in shape.inner:
            return None, f"and {first!r} has no parameter {rest!r}"
        shape, rest = shape.inner[head], tail
