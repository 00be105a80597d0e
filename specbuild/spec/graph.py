"""From a spec's data to graphs of named nodes, checked and ordered.

A spec holds one graph (top-level `inputs`/`layers`/`outputs`) or several named
ones (`networks`), plus `blocks`: sub-graphs that layers use as types.  Each
layer reads the previous one unless `in:` names others.  This module names the
unnamed nodes, resolves `in:`, `share:` and `outputs`, finds duplicates, dangling
references and cycles (networkx), and orders each graph topologically.
"""
from __future__ import annotations

import builtins
import keyword
from dataclasses import dataclass, field

import networkx as nx

from .. import registry
from ..errors import Problem, did_you_mean
from ..inputs import Input, parse_input
from ..registry import lookup
from .variables import block_params

RESERVED = ("name", "type", "in", "repeat", "share", "doc", "when", "tie", "forward")


@dataclass
class Node:
    name: str
    type: str | None                 # None for a `share:` node
    args: dict                       # constructor / function arguments
    inputs: list[str]                # upstream node names, in order
    path: tuple                      # where in the spec, e.g. ("layers", 3)
    repeat: int = 1
    share: str | None = None
    named: bool = True               # False when the name was made up
    copies: list | None = None       # `repeat: [{...}, ...]`: each copy's own arguments
    tie: dict = field(default_factory=dict)   # parameter -> "layer.parameter" it is the same tensor as
    forward: dict = field(default_factory=dict)   # forward-call keyword -> a constant, or the node it reads

    def forward_refs(self) -> dict:
        """The `forward:` arguments that name a node: keyword -> node."""
        return {key: value for key, value in self.forward.items() if isinstance(value, str)}

    def reads(self) -> list[str]:
        """Every node this one reads: its `in:`, then its `forward:` tensors."""
        return list(self.inputs) + list(self.forward_refs().values())


@dataclass
class Graph:
    name: str                        # the spec's name, a network's or a block's
    path: tuple                      # () for the top-level graph, ("networks", n), ("blocks", n)
    inputs: dict[str, Input]
    nodes: dict[str, Node]           # in spec order
    outputs: object                  # a name, a list of names or a dict key -> name
    is_block: bool = False
    order: list[str] = field(default_factory=list)   # topological, ties in spec order
    params: dict = field(default_factory=dict)       # a block's params -> default (variables.REQUIRED: none)

    def output_names(self) -> list[str]:
        if isinstance(self.outputs, dict):
            return list(self.outputs.values())
        if isinstance(self.outputs, list):
            return list(self.outputs)
        return [self.outputs]


@dataclass
class SpecGraphs:
    networks: dict[str, Graph]       # the top-level graph under the spec's name, or each network
    blocks: dict[str, Graph]         # as declared; a block with params is instantiated per use (blocks.py)
    bodies: dict = field(default_factory=dict)   # block name -> its data, for instances


def _is_str(value) -> bool:
    return isinstance(value, str)


def build_graphs(data: dict, spec, problems: list[Problem]) -> SpecGraphs:
    """Graphs of a schema-checked spec; problems found are appended to `problems`."""
    _check_name(data.get("name"), "spec", ("name",), spec, problems)
    blocks = {}
    for name, block in (data.get("blocks") or {}).items():
        _check_name(name, "block", ("blocks", name), spec, problems)
        if lookup(name) is not None:
            problems.append(spec.problem(f"block name {name!r} is already a layer type", ("blocks", name),
                                         hint="rename the block"))
        blocks[name] = block_graph(name, block, spec, problems)
    block_names = set(blocks)
    for graph in blocks.values():
        _check_types(graph, block_names, spec, problems)
    _check_block_recursion(blocks, spec, problems)

    networks = {}
    if "networks" in data:
        if "layers" in data or "inputs" in data:
            problems.append(spec.problem("a spec has either top-level inputs/layers or networks, not both",
                                         ("networks",), hint="move the top-level layers into a network"))
        for name, net in data["networks"].items():
            _check_name(name, "network", ("networks", name), spec, problems)
            networks[name] = _graph(name, ("networks", name), net, _inputs(net.get("inputs"), ("networks", name), spec, problems),
                                    spec, problems, block_names)
    elif "layers" in data:
        networks[data.get("name", "model")] = _graph(data.get("name", "model"), (), data,
                                                     _inputs(data.get("inputs"), (), spec, problems),
                                                     spec, problems, block_names)
    else:
        problems.append(spec.problem("the spec has no layers", (), hint="add `layers:` (or `networks:` for several models)"))
    for graph in networks.values():
        _check_types(graph, block_names, spec, problems)
    return SpecGraphs(networks, blocks, dict(data.get("blocks") or {}))


def block_graph(name: str, body: dict, spec, problems: list) -> Graph:
    """A block's graph from its data (as declared, or an instance with its params' values put in)."""
    inputs = {n: Input(n, None, path=("blocks", name, "inputs", i)) for i, n in enumerate(body.get("inputs") or ["x"])}
    graph = _graph(name, ("blocks", name), body, inputs, spec, problems, set(), is_block=True)
    graph.params = block_params(body)
    return graph


def _inputs(raw, base: tuple, spec, problems) -> dict[str, Input]:
    if not raw:
        problems.append(spec.problem("the model has no inputs", base or (),
                                     hint="add `inputs:` with one sample's shape, e.g. `inputs: {x: [1, 28, 28]}`"))
        return {}
    out = {}
    for name, value in raw.items():
        out[name] = parse_input(name, value, base + ("inputs", name))
    return out


def _graph(name, base, raw, inputs, spec, problems, block_names, is_block=False) -> Graph:
    nodes: dict[str, Node] = {}
    seen: dict[str, tuple] = {n: i.path for n, i in inputs.items()}
    for input_name, given_input in inputs.items():
        _check_name(input_name, "input", given_input.path, spec, problems)
    if isinstance(raw.get("outputs"), dict):
        for key in raw["outputs"]:
            _check_name(key, "output", base + ("outputs", key), spec, problems)
    layers = raw.get("layers") or []
    previous = next(iter(inputs)) if len(inputs) == 1 else None
    left_out: dict[str, str] = {}    # a `when: false` layer -> the node it stands for (its first input)
    for index, layer in enumerate(layers):
        path = base + ("layers", index)
        if not isinstance(layer, dict):
            continue
        type_name = layer.get("type")
        given = layer.get("name")
        node_name = given if _is_str(given) else _made_up_name(type_name or "layer", index, seen)
        if not _included(layer, path, node_name, spec, problems):
            refs = layer.get("in", previous)
            first = (refs[0] if refs else None) if isinstance(refs, list) else refs
            left_out[node_name] = left_out.get(first, first)
            previous = left_out[node_name]
            continue
        _check_name(given, "layer", path + ("name",), spec, problems, node=node_name)
        if node_name in seen:
            first = spec.locate(seen[node_name])[0]
            problems.append(spec.problem(f"duplicate name {node_name!r} (first used on line {first})", path + ("name",),
                                         node=node_name, hint="give every input and layer its own name"))
            continue   # keeping the first: the second would read itself, a cycle that is not there
        seen[node_name] = path
        refs = layer.get("in")
        if refs is None:
            if previous is None:
                what = "the model has several inputs (" + ", ".join(inputs) + ")" if len(inputs) > 1 else "there is no input before it"
                problems.append(spec.problem(f"no `in:` and {what}", path, node=node_name,
                                             hint="name its input(s) with `in:`"))
            refs = [previous] if previous else []
        elif _is_str(refs):
            refs = [refs]
        refs = [left_out.get(ref, ref) if _is_str(ref) else ref for ref in refs]
        repeat = layer.get("repeat", 1)
        copies = repeat if isinstance(repeat, list) and all(isinstance(c, dict) for c in repeat) else None
        count = len(copies) if copies else repeat if isinstance(repeat, int) and not isinstance(repeat, bool) else 1
        tie = layer.get("tie") if isinstance(layer.get("tie"), dict) else {}
        forward = {key: left_out.get(value, value) if _is_str(value) else value
                   for key, value in (layer.get("forward") if isinstance(layer.get("forward"), dict) else {}).items()}
        nodes[node_name] = Node(node_name, type_name if _is_str(type_name) else None,
                                {k: v for k, v in layer.items() if k not in RESERVED}, list(refs), path,
                                count, layer.get("share"), _is_str(given), copies, tie, forward)
        previous = node_name
    graph = Graph(name, base, inputs, nodes, _resolved_outputs(raw.get("outputs", previous), left_out), is_block)
    _check_refs(graph, spec, problems)
    graph.order = _order(graph, spec, problems)
    return graph


def _included(layer: dict, path: tuple, name: str, spec, problems: list) -> bool:
    """A layer's `when:`: true (or absent) keeps it; a `${...}` not yet known (a block's
    params, before each use) keeps it too; anything else but false is an error."""
    when = layer.get("when", True)
    if isinstance(when, bool):
        return when
    if not (isinstance(when, str) and when.startswith("${")):
        problems.append(spec.problem(f"`when:` must be true or false, not {when!r}", path + ("when",), node=name,
                                     hint="write a comparison, e.g. when: ${stride == 1}"))
    return True


def _resolved_outputs(outputs, left_out: dict):
    """`outputs:` naming a left-out layer read what stands for it."""
    if isinstance(outputs, dict):
        return {key: left_out.get(name, name) for key, name in outputs.items()}
    if isinstance(outputs, list):
        return [left_out.get(name, name) for name in outputs]
    return left_out.get(outputs, outputs) if _is_str(outputs) else outputs


# --- the naming rule ------------------------------------------------------------------------------
# Every name a spec gives is a Python identifier (the schema says so) and no Python keyword: the
# generated forward and the built model are Python.  A layer's name becomes an attribute of the
# built model (its submodule, `model.fc1`), so it cannot be one the model already has (`to`, `eval`,
# `training`, `graph`: registry.MODULE_ATTRIBUTES, read from torch), and, as every node's name is
# a variable of the generated `forward(self, ...)`, not `self`.  An input's name becomes a parameter
# of that forward, so it is not `self` either and hides none of the names that forward's code reads
# (Python's builtins such as `slice`, and torch.fx's `torch`, `inf`...).
# Soft keywords (`match`, `case`, `_`) are ordinary names to Python and allowed.
_NAMED = {"layer": "a layer", "input": "an input", "output": "an output", "block": "a block",
          "network": "a network", "spec": "a spec"}


def _name_taken(name: str, role: str) -> str | None:
    """Why `name` cannot name a `role` (a key of _NAMED), or None when it can."""
    if keyword.iskeyword(name):
        return "it is a Python keyword"
    if role == "layer" and name in registry.MODULE_ATTRIBUTES:
        return "every built model (a torch.fx.GraphModule) already has an attribute of that name"
    if role in ("layer", "input") and name == "self":
        return "the generated forward(self, ...) has its own `self`"
    if role == "input" and name in registry.FORWARD_GLOBALS:
        hidden = "Python's builtin" if hasattr(builtins, name) else "the global"
        return f"as a parameter of the generated forward it would hide {hidden} {name!r}, which that code may use"
    return None


def _check_name(name, role: str, path: tuple, spec, problems: list, node: str | None = None) -> None:
    why = _name_taken(name, role) if _is_str(name) else None
    if why is not None:
        fixed = name + "_"
        while _name_taken(fixed, role):
            fixed += "_"
        problems.append(spec.problem(f"{name!r} cannot name {_NAMED[role]}: {why}", path, node=node,
                                     hint=f"rename it, e.g. {fixed!r}"))


def default_name(type_name, index: int) -> str:
    """The name of an unnamed layer: its type lower-cased and its index, `relu_1`."""
    stem = str(type_name).lower() if str(type_name).isidentifier() else "layer"
    return f"{stem}_{index}"


def _made_up_name(type_name, index, seen) -> str:
    name = default_name(type_name, index)
    while name in seen:
        name += "_"
    return name


def _check_refs(graph: Graph, spec, problems) -> None:
    known = list(graph.inputs) + list(graph.nodes)
    for node in graph.nodes.values():
        for i, ref in enumerate(node.inputs):
            if ref not in graph.inputs and ref not in graph.nodes:
                where = node.path + ("in",) + ((i,) if isinstance(spec_value(spec, node.path + ("in",)), list) else ())
                problems.append(spec.problem(f"`in:` names {ref!r}, which is no input or layer", where, node=node.name,
                                             hint=did_you_mean(ref, known) or "known: " + ", ".join(known)))
        for key, ref in node.forward_refs().items():
            if ref not in graph.inputs and ref not in graph.nodes:
                problems.append(spec.problem(f"`forward: {{{key}: {ref}}}` names {ref!r}, which is no input or layer",
                                             node.path + ("forward", key), node=node.name,
                                             hint=did_you_mean(ref, known) or "known: " + ", ".join(known)))
        if node.share is not None:
            target = graph.nodes.get(node.share)
            if target is None:
                problems.append(spec.problem(f"`share:` names {node.share!r}, which is no layer", node.path + ("share",),
                                             node=node.name, hint=did_you_mean(node.share, graph.nodes)))
            elif target.share is not None or target.type is None:
                problems.append(spec.problem(f"`share:` must name a layer with a type, and {node.share!r} is a share itself",
                                             node.path + ("share",), node=node.name, hint=f"share {target.share!r} instead"))
            elif (lt := lookup(target.type)) is not None and not lt.makes_module:
                problems.append(spec.problem(f"{node.share!r} is a tensor function and has no weights to share",
                                             node.path + ("share",), node=node.name, hint="share a layer with weights"))
            if node.type is not None or node.args or node.forward:
                problems.append(spec.problem("a `share:` node takes no type or arguments: it reuses its layer as is",
                                             node.path, node=node.name, hint="remove them, or drop `share:`"))
        elif node.type is None:
            problems.append(spec.problem("the layer has no `type:`", node.path, node=node.name,
                                         hint="add `type:` (e.g. Linear, relu) or `share:` to reuse a layer"))
    outputs_path = graph.path + ("outputs",)
    for i, name in enumerate(graph.output_names()):
        if name is not None and name not in graph.nodes and name not in graph.inputs:
            where = outputs_path
            if isinstance(graph.outputs, list):
                where += (i,)
            elif isinstance(graph.outputs, dict):
                where += (list(graph.outputs)[i],)
            problems.append(spec.problem(f"output {name!r} is no layer", where,
                                         hint=did_you_mean(name, known) or "outputs name layers or inputs"))
    if graph.outputs is None:
        where = graph.path + ("outputs",) if spec_value(spec, graph.path + ("outputs",)) is not None \
            or "outputs" in (spec_value(spec, graph.path) or {}) else graph.path
        problems.append(spec.problem("the model has no outputs", where, hint="add `outputs:` or layers"))


def spec_value(spec, path):
    value = spec.data
    for key in path:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _check_types(graph: Graph, block_names: set, spec, problems) -> None:
    from ..registry import layer_types
    for node in graph.nodes.values():
        if node.type is None or lookup(node.type) is not None or node.type in block_names:
            continue
        problems.append(spec.problem(f"unknown layer type {node.type!r}", node.path + ("type",), node=node.name,
                                     hint=did_you_mean(node.type, list(layer_types()) + sorted(block_names))
                                     or "see `specbuild list` for the layer types"))


def _order(graph: Graph, spec, problems) -> list[str]:
    dag = nx.DiGraph()
    dag.add_nodes_from(graph.inputs)
    dag.add_nodes_from(graph.nodes)
    for node in graph.nodes.values():
        for ref in node.reads():
            if ref in dag:
                dag.add_edge(ref, node.name)
        if node.share in graph.nodes:
            dag.add_edge(node.share, node.name)   # the shared module is built first
    try:
        rank = {n: i for i, n in enumerate(dag.nodes)}
        return list(nx.lexicographical_topological_sort(dag, key=rank.__getitem__))
    except nx.NetworkXUnfeasible:
        cycle = [edge[0] for edge in nx.find_cycle(dag)]
        first = graph.nodes.get(cycle[0])
        problems.append(spec.problem("the layers form a cycle: " + " -> ".join(cycle + cycle[:1]),
                                     first.path if first else graph.path, node=cycle[0],
                                     hint="a model is a directed acyclic graph; check the `in:` of these layers"))
        return []


def _check_block_recursion(blocks: dict[str, Graph], spec, problems) -> None:
    uses = nx.DiGraph()
    for name, graph in blocks.items():
        uses.add_node(name)
        for node in graph.nodes.values():
            if node.type in blocks:
                uses.add_edge(name, node.type)
    try:
        cycle = [edge[0] for edge in nx.find_cycle(uses)]
    except nx.NetworkXNoCycle:
        return
    problems.append(spec.problem("blocks use each other in a cycle: " + " -> ".join(cycle + cycle[:1]),
                                 ("blocks", cycle[0]), hint="a block cannot contain itself"))


def ancestors_of_outputs(graph: Graph) -> set[str]:
    """Nodes some output depends on (the rest are unreachable)."""
    needed, todo = set(), [n for n in graph.output_names() if n is not None]
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        node = graph.nodes.get(name)
        if node is not None:
            todo.extend(node.reads())
            if node.share:
                todo.append(node.share)
    return needed
