"""Warnings for specs that are valid but probably wrong.

The guide specbuild grew from makes these mistakes itself, so users copy them:
probabilities fed to a loss that applies softmax (or sigmoid) again;
reductions over dim 1 after a layer whose `batch_first` is false, where dim 1
is the batch and the mean mixes samples; and, more generally, such a layer fed
straight from an input, whose batch specbuild puts in dim 0.  Also a layer that
works in place (`inplace: true`) on a tensor that something else reads too.
"""
from __future__ import annotations

from ..errors import Problem

# loss -> (what it applies itself, output types that already applied it)
_DOUBLE = {
    "CrossEntropyLoss": ("log_softmax", {"softmax", "Softmax", "log_softmax", "LogSoftmax"}),
    "BCEWithLogitsLoss": ("sigmoid", {"sigmoid", "Sigmoid"}),
    "NLLLoss": ("nothing, it expects log-probabilities", {"softmax", "Softmax"}),
}
_SEQUENCE_TYPES = {"RNN", "LSTM", "GRU", "MultiheadAttention", "TransformerEncoderLayer",
                   "TransformerEncoder", "TransformerDecoderLayer", "TransformerDecoder", "Transformer"}
_REDUCTIONS = {"mean", "sum", "amax", "amin"}


def lint(checked) -> list[Problem]:
    reductions = _batch_axis(checked)
    warned = {p.key[:-1] for p in reductions}      # the reduction nodes already warned about
    return _double_activation(checked) + reductions + _batch_second(checked, warned) + _in_place(checked)


def _in_place(checked) -> list[Problem]:
    """`inplace: true` overwrites its input: wrong when another node, an output or the caller (a
    graph input) still reads that tensor.  torchvision puts in-place ReLUs only after layers
    nothing else reads, as specs/resnet18.yaml does."""
    problems = []
    for graph in list(checked.graphs.networks.values()) + list(checked.graphs.blocks.values()):
        readers: dict = {}
        for node in graph.nodes.values():
            for ref in node.reads() + ([node.share] if node.share else []):
                readers.setdefault(ref, []).append(node.name)
        outputs = set(graph.output_names())
        for node in graph.nodes.values():
            if node.args.get("inplace") is not True or not node.inputs:
                continue
            source = node.inputs[0]
            others = [r for r in readers.get(source, []) if r != node.name]
            why = (f"{others[0]!r} reads it too" if others else f"it is an output" if source in outputs
                   else "it is the caller's tensor" if source in graph.inputs and not graph.is_block else None)
            if why:
                problems.append(checked.spec.problem(
                    f"{node.type} {node.name!r} overwrites its input {source!r} in place, and {why}",
                    node.path + ("inplace",), node=node.name,
                    hint="drop `inplace: true`, or put the layer where nothing else reads its input",
                    severity="warning"))
    return problems


def _graph_of(checked, node_name):
    for graph in checked.graphs.networks.values():
        if node_name in graph.nodes:
            return graph
    return None


def _double_activation(checked) -> list[Problem]:
    train = checked.data.get("train") if isinstance(checked.data.get("train"), dict) else {}
    losses = train.get("loss")
    losses = losses if isinstance(losses, list) else [losses] if isinstance(losses, dict) else []
    problems = []
    for i, loss in enumerate(losses):
        rule = _DOUBLE.get(loss.get("type"))
        if rule is None:
            continue
        on = loss.get("on")
        if on is None:
            graphs = list(checked.graphs.networks.values())
            names = graphs[0].output_names() if len(graphs) == 1 else []
            on = names[0] if len(names) == 1 else None
        graph = _graph_of(checked, on) if on else None
        node = graph.nodes.get(on) if graph else None
        if node is None or node.type not in rule[1]:
            continue
        path = ("train", "loss") + ((i,) if isinstance(train.get("loss"), list) else ())
        upstream = node.inputs[0] if node.inputs else "the layer before it"
        problems.append(checked.spec.problem(
            f"{loss['type']} applies {rule[0]} itself, but reads {on!r}, the output of {node.type}",
            path, hint=f"train on the raw scores: set the loss's `on: {upstream}`", severity="warning"))
    return problems


def _batch_axis(checked) -> list[Problem]:
    problems = []
    for graph in list(checked.graphs.networks.values()) + list(checked.graphs.blocks.values()):
        for node in graph.nodes.values():
            if node.type not in _REDUCTIONS or node.args.get("dim") not in (1, [1]):
                continue
            source = _sequence_source(graph, node)
            if source is not None:
                problems.append(checked.spec.problem(
                    f"{node.type} over dim 1 after {source.name!r} ({source.type}) whose batch_first is false: "
                    "dim 1 is the batch there, so this mixes samples",
                    node.path + ("dim",), node=node.name,
                    hint=f"set `batch_first: true` on {source.name!r} (or reduce over dim 0)", severity="warning"))
    return problems


_LAYOUT_OPS = {"transpose", "permute", "reshape", "view", "unsqueeze", "squeeze", "flatten", "Flatten", "Unflatten"}


def _batch_second(checked, warned: set) -> list[Problem]:
    """A sequence layer with batch_first false, fed straight from a spec input: specbuild puts the
    batch in dim 0, so the layer takes the batch for the sequence (and vice versa)."""
    problems = []
    for graph in list(checked.graphs.networks.values()) + list(checked.graphs.blocks.values()):
        for node in graph.nodes.values():
            if node.type not in _SEQUENCE_TYPES or _batch_first(node.args):
                continue
            if any(_reads_through(graph, n, node.name) for n in graph.nodes if n and graph.nodes[n].path in warned):
                continue   # the reduction over dim 1 after it is warned about already
            if _fed_by_an_input(graph, node):
                problems.append(checked.spec.problem(
                    f"{node.type} has batch_first false, so it reads dim 0 of its input as the sequence, "
                    "but specbuild's inputs put the batch in dim 0",
                    node.path, node=node.name,
                    hint="set `batch_first: true` (or transpose dims 0 and 1 before it)", severity="warning"))
    return problems


def _batch_first(args: dict) -> bool:
    nested = [v for v in args.values() if isinstance(v, dict) and "type" in v]
    return bool(args.get("batch_first")) or any(n.get("batch_first") for n in nested)


def _fed_by_an_input(graph, node) -> bool:
    """Whether a path from a spec input reaches `node` without a layout op (transpose, reshape...)."""
    seen, todo = set(), list(node.inputs)
    while todo:
        name = todo.pop()
        if name in graph.inputs:
            return True
        upstream = graph.nodes.get(name)
        if upstream is None or name in seen or upstream.type in _LAYOUT_OPS:
            continue
        seen.add(name)
        todo.extend(upstream.inputs)
    return False


def _reads_through(graph, start: str, target: str) -> bool:
    """Whether node `start` depends on node `target`."""
    seen, todo = set(), list(graph.nodes[start].inputs)
    while todo:
        name = todo.pop()
        if name == target:
            return True
        if name in seen or name not in graph.nodes:
            continue
        seen.add(name)
        todo.extend(graph.nodes[name].inputs)
    return False


def _sequence_source(graph, node):
    """The recurrent/attention layer feeding `node` (through item/slice ops), if its batch_first is false."""
    seen, todo = set(), list(node.inputs)
    while todo:
        name = todo.pop()
        upstream = graph.nodes.get(name)
        if upstream is None or name in seen:
            continue
        seen.add(name)
        if upstream.type in _SEQUENCE_TYPES:
            args = upstream.args
            nested = args.get("encoder_layer") if isinstance(args.get("encoder_layer"), dict) else {}
            return None if args.get("batch_first") or nested.get("batch_first") else upstream
        if upstream.type == "slice" and not _keeps_dims_0_and_1(upstream.args.get("at")):
            continue   # out[-1] drops the sequence dim: the batch is dim 0 after it
        if upstream.type in {"item", "slice", "Dropout", "dropout", "LayerNorm"}:
            todo.extend(upstream.inputs)
    return None


def _keeps_dims_0_and_1(at) -> bool:
    """Whether indexing with `at` leaves dims 0 and 1 where they were ("[:, :, 0]", "[..., 0]"),
    unlike "[-1]" or "[:, -1]", which drop one of them, or "[None]", which inserts one."""
    from ..shapes.index import parse_index
    from ..shapes.core import ShapeError
    try:
        items = parse_index(at)
    except ShapeError:
        return True
    lead = items[:items.index(Ellipsis)] if Ellipsis in items else items
    return all(isinstance(item, slice) for item in lead[:2])
