"""`specbuild graph`: a spec's graph as Mermaid, Graphviz DOT, or a PNG; and as SVG for
the run report.

The PNG is drawn with matplotlib (layers placed by topological generation), so
no system Graphviz is needed; the SVG shares that layout and is written by hand,
so a report costs no matplotlib figure.  Each network is drawn as its own cluster; node
labels carry the type and the inferred output shape.  A PNG is for what a person
can read: `specbuild graph` refuses one of more than MAX_PNG_NODES nodes (the text
formats have no limit), and `png_size` lowers the resolution so that no picture
exceeds MAX_PNG_PIXELS or MAX_PNG_SIDE.
"""
from __future__ import annotations

from dataclasses import dataclass
from html import escape

import networkx as nx

from ..shapes.core import format_shape
from ..spec.validate import check


MAX_PNG_NODES = 400             # drawn one per row at worst: about 44,000 pixels at full resolution
MAX_PNG_PIXELS = 40_000_000      # about 160 MB as RGBA in memory
MAX_PNG_SIDE = 30_000            # below Agg's limit of 2**16 pixels a side
PNG_DPI = 110


@dataclass
class Drawing:
    networks: dict      # network name -> nx.DiGraph with node attribute "label"


def spec_graph(spec, *, overrides: dict | None = None) -> Drawing:
    checked = check(spec, overrides=overrides)
    networks = {}
    for name, graph in checked.graphs.networks.items():
        shapes = checked.shapes[name]
        dag = nx.DiGraph()
        for input_name, spec_input in graph.inputs.items():
            dag.add_node(input_name, label=f"{input_name}\ninput {format_shape(('N',) + tuple(spec_input.shape or ()))}",
                         kind="input")
        for node_name in graph.order:
            node = graph.nodes.get(node_name)
            if node is None:
                continue
            kind = f"share({node.share})" if node.share else node.type + (f" x{node.repeat}" if node.repeat > 1 else "")
            shape = format_shape(shapes[node_name].output) if node_name in shapes else "?"
            dag.add_node(node_name, label=f"{node_name}\n{kind} {shape}", kind="layer")
            for ref in node.inputs:
                dag.add_edge(ref, node_name)
        for i, out in enumerate(graph.output_names()):
            key = f"output_{i}" if len(graph.output_names()) > 1 else "output"
            dag.add_node(f"{name}__{key}", label=key, kind="output")
            dag.add_edge(out, f"{name}__{key}")
        networks[name] = dag
    return Drawing(networks)


def node_count(drawing: Drawing) -> int:
    return sum(dag.number_of_nodes() for dag in drawing.networks.values())


def _quote(text: str) -> str:
    return text.replace('"', "'")


def to_mermaid(drawing: Drawing) -> str:
    lines = ["flowchart TD"]
    several = len(drawing.networks) > 1
    for net, dag in drawing.networks.items():
        ids = {n: f"{net}_{n}" if several else n for n in dag.nodes}
        if several:
            lines.append(f"  subgraph {net}")
        for n, data in dag.nodes(data=True):
            label = _quote(data["label"]).replace("\n", "<br/>")
            shape = ('(["', '"])') if data["kind"] in ("input", "output") else ('["', '"]')
            lines.append(f"  {ids[n]}{shape[0]}{label}{shape[1]}")
        for a, b in dag.edges:
            lines.append(f"  {ids[a]} --> {ids[b]}")
        if several:
            lines.append("  end")
    return "\n".join(lines) + "\n"


def to_dot(drawing: Drawing, name: str = "spec") -> str:
    lines = [f'digraph "{_quote(name)}" {{', "  rankdir=TB;", '  node [shape=box, fontname="Helvetica"];']
    several = len(drawing.networks) > 1
    for net, dag in drawing.networks.items():
        ids = {n: f"{net}.{n}" if several else n for n in dag.nodes}
        indent = "    " if several else "  "
        if several:
            lines.append(f'  subgraph "cluster_{net}" {{')
            lines.append(f'    label="{net}";')
        for n, data in dag.nodes(data=True):
            style = ", shape=ellipse" if data["kind"] in ("input", "output") else ""
            label = _quote(data["label"]).replace("\n", "\\n")
            lines.append(f'{indent}"{ids[n]}" [label="{label}"{style}];')
        for a, b in dag.edges:
            lines.append(f'{indent}"{ids[a]}" -> "{ids[b]}";')
        if several:
            lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _layout(dag: nx.DiGraph) -> dict:
    """Top to bottom by topological generation; each generation centred."""
    pos = {}
    for depth, generation in enumerate(nx.topological_generations(dag)):
        generation = sorted(generation, key=list(dag.nodes).index)
        for i, n in enumerate(generation):
            pos[n] = (i - (len(generation) - 1) / 2, -depth)
    return pos


def png_size(drawing: Drawing) -> tuple[float, float, float]:
    """(width, height) in inches and the dpi of the PNG: a box per node, fewer dots per inch for a
    picture that would exceed MAX_PNG_PIXELS or MAX_PNG_SIDE."""
    heights = [len(list(nx.topological_generations(d))) for d in drawing.networks.values()]
    widths = [max((len(g) for g in nx.topological_generations(d)), default=1) for d in drawing.networks.values()]
    width, height = max(4.0, 3.2 * sum(widths)), max(3.0, 1.1 * max(heights, default=1))
    dpi = min(PNG_DPI, (MAX_PNG_PIXELS / (width * height)) ** 0.5, MAX_PNG_SIDE / max(width, height))
    return width, height, dpi


def to_png(drawing: Drawing, path: str, title: str = "") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = list(drawing.networks.items())
    width, height, dpi = png_size(drawing)
    fig, axes = plt.subplots(1, len(nets), figsize=(width, height), squeeze=False)
    colours = {"input": "#d8ecff", "output": "#ffe9c7", "layer": "#eeeeee"}
    for ax, (net, dag) in zip(axes[0], nets):
        pos = _layout(dag)
        for a, b in dag.edges:
            ax.annotate("", xy=pos[b], xytext=pos[a],
                        arrowprops=dict(arrowstyle="-|>", color="#555555", shrinkA=14, shrinkB=14, lw=1.2))
        for n, data in dag.nodes(data=True):
            x, y = pos[n]
            ax.text(x, y, data["label"], ha="center", va="center", fontsize=8,
                    bbox=dict(boxstyle="round,pad=0.4", fc=colours[data["kind"]], ec="#333333"))
        xs = [p[0] for p in pos.values()] or [0]
        ys = [p[1] for p in pos.values()] or [0]
        ax.set_xlim(min(xs) - 0.8, max(xs) + 0.8)
        ax.set_ylim(min(ys) - 0.6, max(ys) + 0.6)
        ax.set_title(net if len(nets) > 1 else (title or net))
        ax.axis("off")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)


# the SVG's measures, in pixels: a label's width is guessed from its length (no font metrics here)
SVG_CHAR, SVG_LINE, SVG_PAD, SVG_GAP_X, SVG_GAP_Y, SVG_TITLE = 7.0, 15.0, 8.0, 22.0, 34.0, 26.0


def _box(label: str) -> tuple[float, float]:
    lines = label.split("\n")
    return max(len(line) for line in lines) * SVG_CHAR + 2 * SVG_PAD, len(lines) * SVG_LINE + 2 * SVG_PAD


def to_svg(drawing: Drawing, title: str = "") -> str:
    """The graph as one <svg> element for embedding in a page: to_png's layout, each network
    beside the others, boxes sized to their labels.  Every label is escaped."""
    parts, x0, height = [], 0.0, 0.0
    several = len(drawing.networks) > 1
    for net, dag in drawing.networks.items():
        body, width, net_height = _network_svg(dag, x0, SVG_TITLE if several else 0.0)
        if several:
            parts.append(f'<text class="net" x="{x0 + width / 2:.1f}" y="16" text-anchor="middle">{escape(net)}</text>')
        parts += body
        x0 += width + SVG_GAP_X
        height = max(height, net_height)
    width = max(x0 - SVG_GAP_X, 1.0)
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{escape(title or "graph")}">'
            f'<title>{escape(title or "graph")}</title>'
            '<defs><marker id="sb-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
            'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>')
    return head + "".join(parts) + "</svg>"


def _network_svg(dag: nx.DiGraph, x0: float, top: float) -> tuple[list, float, float]:
    """(SVG elements, width, height) of one network drawn from x0 across and `top` down."""
    pos = _layout(dag)
    boxes = {n: _box(data["label"]) for n, data in dag.nodes(data=True)}
    if not pos:
        return [], 0.0, top
    widest = max(w for w, _ in boxes.values())
    unit_x, unit_y = widest + SVG_GAP_X, max(h for _, h in boxes.values()) + SVG_GAP_Y
    low, high = min(x for x, _ in pos.values()), max(x for x, _ in pos.values())
    # an edge past whole generations leaves its box by the side and bows around the boxes
    # between: the further it goes, the wider, so nested skips (a U-Net's) do not cross
    reach = {(a, b): 30 + 14 * (pos[a][1] - pos[b][1] - 2) for a, b in dag.edges if pos[a][1] - pos[b][1] > 1}
    margin = max([0.75 * r for r in reach.values()] + [0.0])
    centre = {n: (x0 + margin + (x - low) * unit_x + widest / 2, top + -y * unit_y + unit_y / 2)
              for n, (x, y) in pos.items()}
    width = (high - low) * unit_x + widest + 2 * margin
    height = top + (max(-y for _, y in pos.values()) + 1) * unit_y
    out = []
    for a, b in dag.edges:
        (xa, ya), (xb, yb) = centre[a], centre[b]
        if (a, b) in reach:
            side = 1 if pos[a][0] >= (low + high) / 2 else -1
            xa, xb = xa + side * boxes[a][0] / 2, xb + side * boxes[b][0] / 2
            turn = (max(xa, xb) if side > 0 else min(xa, xb)) + side * reach[a, b]
            path = f"M{xa:.1f},{ya:.1f} C{turn:.1f},{ya:.1f} {turn:.1f},{yb:.1f} {xb:.1f},{yb:.1f}"
        else:
            path = f"M{xa:.1f},{ya + boxes[a][1] / 2:.1f} L{xb:.1f},{yb - boxes[b][1] / 2:.1f}"
        out.append(f'<path class="edge" d="{path}" fill="none" stroke="#555" stroke-width="1.2" '
                   'marker-end="url(#sb-arrow)"/>')
    colours = {"input": "#d8ecff", "output": "#ffe9c7", "layer": "#eeeeee"}
    for n, data in dag.nodes(data=True):
        (x, y), (w, h) = centre[n], boxes[n]
        rx = h / 2 if data["kind"] in ("input", "output") else 5
        out.append(f'<g class="node {data["kind"]}"><rect x="{x - w / 2:.1f}" y="{y - h / 2:.1f}" width="{w:.1f}" '
                   f'height="{h:.1f}" rx="{rx:.1f}" fill="{colours[data["kind"]]}" stroke="#333"/>')
        lines = data["label"].split("\n")
        first = y - (len(lines) - 1) * SVG_LINE / 2
        spans = "".join(f'<tspan x="{x:.1f}" y="{first + i * SVG_LINE:.1f}">{escape(line)}</tspan>'
                        for i, line in enumerate(lines))
        out.append(f'<text text-anchor="middle" dominant-baseline="central">{spans}</text></g>')
    return out, width, height
