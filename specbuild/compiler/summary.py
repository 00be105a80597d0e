"""`specbuild summary`: per node its type, inputs, output shape and parameters.

Computed from shape inference alone, so it never allocates a weight (nor imports
torch): a 10-billion-parameter spec is summarised in well under a second.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..spec.graph import Graph
from ..shapes.core import format_shape
from ..spec.validate import check

BYTES_PER_PARAM = 4   # float32


@dataclass
class Row:
    name: str           # dotted for nodes inside blocks and repeats: encoder.conv1, hidden.0
    type: str
    inputs: list
    output: str
    params: int
    depth: int = 0


@dataclass
class NetworkSummary:
    name: str
    inputs: dict        # input name -> shape text
    outputs: object
    rows: list

    @property
    def params(self) -> int:
        return sum(r.params for r in self.rows if r.depth == 0)


def summary(spec, *, network: str | None = None, overrides: dict | None = None) -> list[NetworkSummary]:
    """One NetworkSummary per network of the spec (or just `network`)."""
    checked = check(spec, overrides=overrides)
    out = []
    for name, graph in checked.graphs.networks.items():
        if network is not None and name != network:
            continue
        rows = _rows(graph, checked.shapes[name], checked, "", 0)
        inputs = {n: format_shape(("N",) + tuple(i.shape or ())) + ("" if i.shown_dtype == "float32" else f" {i.shown_dtype}")
                  for n, i in graph.inputs.items()}
        out.append(NetworkSummary(name, inputs, graph.outputs, rows))
    if network is not None and not out:
        from .compile import pick_network   # raises the did-you-mean error
        pick_network(checked, network)
    return out


def _rows(graph: Graph, shapes: dict, checked, prefix: str, depth: int) -> list[Row]:
    rows = []
    for name in graph.order:
        node = graph.nodes.get(name)
        if node is None or name not in shapes:
            continue
        result = shapes[name]
        type_name = f"share({node.share})" if node.share else node.type
        if node.repeat > 1:
            type_name += f" x{node.repeat}"
        rows.append(Row(prefix + name, type_name, list(node.inputs), format_shape(result.output), result.params, depth))
        block = checked.graphs.blocks.get(node.type) if node.type else None
        if node.share:
            continue
        if node.repeat > 1:
            for i in range(node.repeat):
                copy = result.inner[str(i)]
                if block is not None:   # each copy's own instance: its params may differ (repeat: [...])
                    rows += _rows(copy.graph or block, copy.inner, checked, f"{prefix}{name}.{i}.", depth + 1)
                else:
                    rows.append(Row(f"{prefix}{name}.{i}", node.type, [], format_shape(copy.output), copy.params, depth + 1))
        elif block is not None:
            rows += _rows(result.graph or block, result.inner, checked, f"{prefix}{name}.", depth + 1)
    return rows


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024


def render(summaries: list[NetworkSummary]) -> str:
    lines = []
    for s in summaries:
        lines.append(f"{s.name}: inputs " + ", ".join(f"{k} {v}" for k, v in s.inputs.items()))
        table = [("node", "type", "inputs", "output shape", "params")]
        for r in s.rows:
            table.append(("  " * r.depth + r.name, r.type, ", ".join(r.inputs), r.output, f"{r.params:,}"))
        widths = [max(len(row[i]) for row in table) for i in range(5)]
        for i, row in enumerate(table):
            cells = [row[j].ljust(widths[j]) for j in range(4)] + [row[4].rjust(widths[4])]
            lines.append("  ".join(cells).rstrip())
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.append(f"total parameters: {s.params:,} ({human_bytes(s.params * BYTES_PER_PARAM)} as float32)")
        lines.append("")
    if len(summaries) > 1:
        total = sum(s.params for s in summaries)
        lines.append(f"all networks: {total:,} parameters ({human_bytes(total * BYTES_PER_PARAM)} as float32)")
    return "\n".join(lines).rstrip() + "\n"
