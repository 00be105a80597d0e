"""Warnings for specs that are valid but probably wrong.

The guide specbuild grew from makes these mistakes itself, so users copy them:
probabilities fed to a loss that applies softmax (or sigmoid) again, and
reductions over dim 1 after a layer whose `batch_first` is false, where dim 1
is the batch and the mean mixes samples.
"""
from __future__ import annotations

from .errors import Problem

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
    return _double_activation(checked) + _batch_axis(checked)


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
    from .shape_ops import parse_index
    from .shapes import ShapeError
    try:
        items = parse_index(at)
    except ShapeError:
        return True
    lead = items[:items.index(Ellipsis)] if Ellipsis in items else items
    return all(isinstance(item, slice) for item in lead[:2])
