"""`specbuild graph` (PNG, Mermaid, DOT) and `specbuild list`.

The expected nodes and edges come from the checked spec's own graph (each node's `in:`
and the outputs), not from render_graph, so a drawing that drops or invents an edge
fails.  The PNG is checked as a file (signature, size, not blank) and as a drawing:
matplotlib's Axes.text and Axes.annotate are wrapped to record every label and arrow
to_png draws, and each arrow is mapped back to the two labels it joins.
"""
from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from specbuild.compiler.render import spec_graph
from specbuild.spec.validate import check

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "specs"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def expected_graph(spec) -> dict[str, tuple[set, set]]:
    """network -> (node names, edges) from the spec's graph: inputs, layers, and one
    output node per output ("output", or "output_0", "output_1"...)."""
    result = {}
    for name, graph in check(spec).graphs.networks.items():
        nodes = set(graph.inputs) | set(graph.nodes)
        edges = {(ref, node.name) for node in graph.nodes.values() for ref in node.inputs}
        outs = graph.output_names()
        for i, out in enumerate(outs):
            key = "output" if len(outs) == 1 else f"output_{i}"
            nodes.add(key)
            edges.add((out, key))
        result[name] = (nodes, edges)
    return result


# --- PNG -----------------------------------------------------------------------------------

@pytest.fixture
def drawn(monkeypatch):
    """Record what to_png draws: labels (with their axes and position) and arrows."""
    from matplotlib.axes import Axes
    record = {"texts": [], "arrows": []}
    text, annotate = Axes.text, Axes.annotate

    def recording_text(self, x, y, s, *args, **kwargs):
        record["texts"].append((self, (x, y), s))
        return text(self, x, y, s, *args, **kwargs)

    def recording_annotate(self, s, xy, *args, **kwargs):
        record["arrows"].append((self, tuple(kwargs.get("xytext", xy)), tuple(xy), kwargs.get("arrowprops")))
        return annotate(self, s, xy, *args, **kwargs)

    monkeypatch.setattr(Axes, "text", recording_text)
    monkeypatch.setattr(Axes, "annotate", recording_annotate)
    return record


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_png_of_encoder_decoder(tmp_path, run, drawn):
    import matplotlib.image

    out = tmp_path / "graph.png"
    spec = SPECS / "encoder_decoder.yaml"
    rc, stdout, err = run("graph", spec, "--format", "png", "--out", out)
    assert rc == 0 and err == "" and stdout.strip() == f"wrote {out}"

    data = out.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert 5_000 < len(data) < 2_000_000, len(data)
    width, height = _png_size(data)
    assert 300 <= width <= 4000 and 300 <= height <= 4000, (width, height)

    pixels = matplotlib.image.imread(str(out))
    assert pixels.shape[:2] == (height, width)
    rgb = pixels[..., :3]
    ink = (rgb.min(axis=2) < 0.9).mean()              # share of pixels that are not (near) white
    assert 0.01 < ink < 0.6, ink
    coloured = (rgb.max(axis=2) - rgb.min(axis=2) > 0.05).mean()    # the boxes are tinted
    assert coloured > 0.002, coloured

    # every node label and every edge of the spec's graph was drawn
    [(nodes, edges)] = expected_graph(spec).values()
    dag = spec_graph(spec).networks["encoder_decoder"]
    labels = {data["label"].split("\n")[0]: data["label"] for _, data in dag.nodes(data=True)}
    texts = {s: pos for _, pos, s in drawn["texts"]}
    assert len(drawn["texts"]) == len(texts) == len(nodes)          # each label once
    by_position = {pos: s.split("\n")[0] for s, pos in texts.items()}
    assert set(by_position.values()) == nodes
    for name in nodes:
        assert labels[name] in texts                                # the full label: name, type, shape
    assert "encoder\nEncoder [N, 64, 14, 14]" in texts and "decoder\nDecoder [N, 1, 28, 28]" in texts
    assert "x\ninput [N, 1, 28, 28]" in texts
    arrows = {(by_position[start], by_position[end]) for _, start, end, _ in drawn["arrows"]}
    assert len(drawn["arrows"]) == len(edges) and arrows == edges
    assert all(props and props.get("arrowstyle") for *_, props in drawn["arrows"])
    for axes, (x, y), _ in drawn["texts"]:                         # every label lies inside the axes
        x0, x1 = axes.get_xlim()
        y0, y1 = axes.get_ylim()
        assert x0 < x < x1 and y0 < y < y1


def test_png_of_several_networks_and_default_path(tmp_path, run, drawn, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, stdout, _ = run("graph", SPECS / "gan.yaml", "--format", "png")
    assert rc == 0 and stdout.strip() == "wrote gan.png"
    assert (tmp_path / "gan.png").read_bytes()[:8] == PNG_SIGNATURE
    expected = expected_graph(SPECS / "gan.yaml")
    axes = {}
    for ax, pos, s in drawn["texts"]:
        axes.setdefault(ax, {})[pos] = s.split("\n")[0]
    assert len(axes) == 2                                          # one panel per network
    titles = {ax.get_title(): positions for ax, positions in axes.items()}
    assert set(titles) == {"generator", "discriminator"}
    for network, (nodes, edges) in expected.items():
        positions = titles[network]
        assert set(positions.values()) == nodes
        arrows = {(positions[a], positions[b]) for ax, a, b, _ in drawn["arrows"] if titles.get(ax.get_title()) is positions}
        assert arrows == edges, network


# --- Mermaid and DOT ------------------------------------------------------------------------

MERMAID_NODE = re.compile(r'^\s*(\w+)(?:\(\["|\[")(.*?)(?:"\]\)|"\])\s*$')
MERMAID_EDGE = re.compile(r"^\s*(\w+) --> (\w+)\s*$")
DOT_NODE = re.compile(r'^\s*"([^"]+)" \[label="(.*?)"(?:, [^\]]*)?\];$')
DOT_EDGE = re.compile(r'^\s*"([^"]+)" -> "([^"]+)";$')


def parse_mermaid(text: str) -> dict[str, tuple[set, set]]:
    """network (or "" outside subgraphs) -> (node names, edges), names read from the labels."""
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    network, names, found = "", {}, {}
    for line in lines[1:]:
        if m := re.match(r"^\s*subgraph (\w+)\s*$", line):
            network = m.group(1)
        elif line.strip() == "end":
            network = ""
        elif m := MERMAID_EDGE.match(line):
            a, b = m.groups()
            found.setdefault(network, (set(), set()))[1].add((names[a], names[b]))
        elif m := MERMAID_NODE.match(line):
            ident, label = m.groups()
            names[ident] = label.split("<br/>")[0]
            found.setdefault(network, (set(), set()))[0].add(names[ident])
        else:
            pytest.fail(f"unexpected Mermaid line {line!r}")
    return found


def parse_dot(text: str) -> dict[str, tuple[set, set]]:
    lines = text.splitlines()
    assert lines[0].startswith("digraph ") and lines[-1] == "}"
    network, names, found = "", {}, {}
    for line in lines[1:-1]:
        if m := re.match(r'^\s*subgraph "cluster_(\w+)" \{$', line):
            network = m.group(1)
        elif line.strip() == "}":
            network = ""
        elif m := DOT_EDGE.match(line):
            a, b = m.groups()
            found.setdefault(network, (set(), set()))[1].add((names[a], names[b]))
        elif m := DOT_NODE.match(line):
            ident, label = m.groups()
            names[ident] = label.split("\\n")[0]
            found.setdefault(network, (set(), set()))[0].add(names[ident])
        elif not re.match(r'^\s*(rankdir=TB;|node \[.*\];|label=".*";)$', line):
            pytest.fail(f"unexpected DOT line {line!r}")
    return found


PARSERS = {"mermaid": parse_mermaid, "dot": parse_dot}
BRANCHING = [SPECS / "multi_input.yaml", SPECS / "multi_output.yaml", SPECS / "gan.yaml",
             SPECS / "encoder_decoder.yaml"]


@pytest.mark.parametrize("fmt", ["mermaid", "dot"])
@pytest.mark.parametrize("spec", BRANCHING, ids=[p.stem for p in BRANCHING])
def test_text_formats_show_every_node_and_edge(spec, fmt, run, tmp_path):
    rc, out, err = run("graph", spec, "--format", fmt)
    assert rc == 0 and err == ""
    found = PARSERS[fmt](out)
    expected = expected_graph(spec)
    if len(expected) == 1:                  # one network: no subgraph
        assert list(found) == [""]
        found = {next(iter(expected)): found[""]}
    assert found == expected

    target = tmp_path / f"graph.{fmt}"
    rc, written, _ = run("graph", spec, "--format", fmt, "--out", target)
    assert rc == 0 and written.strip() == f"wrote {target}"
    assert target.read_text() == out


def test_mermaid_is_the_default_and_branches_are_right(run):
    rc, out, _ = run("graph", SPECS / "multi_input.yaml")
    assert rc == 0 and out.startswith("flowchart TD\n")
    edges = parse_mermaid(out)[""][1]
    assert {("h1", "joined"), ("h2", "joined"), ("x2", "fc2"), ("x1", "x1_flat")} <= edges
    assert 'x2(["x2<br/>input [N, 10]"])' in out and 'joined["joined<br/>cat [N, 256]"]' in out


def test_graph_of_a_spec_with_share_and_unused_layer(tmp_path, run):
    """share: a second edge into the shared computation; an unused layer is still drawn."""
    spec = tmp_path / "tied.yaml"
    spec.write_text("specbuild: 1\nname: tied\ninputs:\n  a: [4]\n  b: [4]\nlayers:\n"
                    "  - {name: fc, type: Linear, out_features: 4, in: a}\n"
                    "  - {name: again, share: fc, in: b}\n  - {name: spare, type: relu, in: a}\n"
                    "  - {name: s, type: add, in: [fc, again]}\noutputs: s\n")
    rc, out, _ = run("graph", spec, "--format", "dot")
    assert rc == 0
    assert parse_dot(out)[""] == expected_graph(spec)["tied"]
    assert '"again" [label="again\\nshare(fc) [N, 4]"];' in out
    assert '"spare" [label="spare\\nrelu [N, 4]"];' in out


def test_graph_set_and_errors(tmp_path, run):
    rc, out, _ = run("graph", SPECS / "lstm.yaml", "--set", "hidden_size=9")
    assert rc == 0 and "LSTM ([N, 50, 9], ([1, N, 9], [1, N, 9]))" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("specbuild: 1\nname: m\ninputs:\n  x: [3]\nlayers:\n  - {type: Linearr, out_features: 2}\n")
    rc, out, err = run("graph", bad)
    assert rc == 1 and out == "" and err.startswith(f"{bad}:6:") and "did you mean 'Linear'" in err
    rc, _, err = run("graph", SPECS / "cnn.yaml", "--format", "svg")
    assert rc == 2 and "invalid choice: 'svg'" in err


# --- specbuild list -------------------------------------------------------------------------

def test_list_specs_and_every_guide_heading(run):
    from specbuild.cli.guide_map import HEADINGS
    rc, out, err = run("list")
    assert rc == 0 and err == ""
    assert run("list", "specs")[1] == out
    listing, _, headings = out.partition("\nguide heading -> spec\n")
    shipped = sorted(p.stem for p in SPECS.glob("*.yaml"))
    assert sorted(line.split()[0] for line in listing.splitlines() if line.strip()) == shipped
    rows = dict(re.match(r"^  (.+?)\s{2,}(\w+)$", line).groups() for line in headings.splitlines() if line.strip())
    assert rows == HEADINGS
    assert rows["Multi-Output"] == "multi_output" and rows["Complete Example of Training a Model"] == "fnn"
    guide = REPO.parent / "shared" / "seed" / "pytorch-fundamentals.md"
    if guide.exists():                       # the guide sits beside the checkout: compare with it too
        text = guide.read_text()
        body = text[text.index("### **1."):text.index("### **5.")]
        in_guide = re.findall(r"^#### (.+?)\s*$", body, flags=re.M) + ["Complete Example of Training a Model"]
        assert sorted(rows) == sorted(in_guide)


def test_list_layers_functions_and_losses(run):
    rc, out, _ = run("list", "layers")
    assert rc == 0
    layers = {line.split()[0]: line for line in out.splitlines()}
    assert {"Linear", "Conv2d", "LSTM", "MultiheadAttention", "TransformerEncoder", "Sequential",
            "weight_norm", "spectral_norm"} <= set(layers)
    assert "relu" not in layers and "cat" not in layers and "CrossEntropyLoss" not in layers
    assert "out_features" in layers["Linear"]
    rc, out, _ = run("list", "functions")
    functions = {line.split()[0] for line in out.splitlines()}
    assert {"relu", "softmax", "cat", "slice", "item", "reshape"} <= functions and "Linear" not in functions
    rc, out, _ = run("list", "losses")
    losses = {line.split()[0]: line for line in out.splitlines()}
    assert {"CrossEntropyLoss", "MSELoss", "BCEWithLogitsLoss", "NLLLoss"} <= set(losses)
    assert "reduction='mean'" in losses["MSELoss"]
    for what, member in (("optimizers", "Adam"), ("schedulers", "StepLR"), ("metrics", "accuracy")):
        rc, out, _ = run("list", what)
        assert rc == 0 and member in {line.split()[0] for line in out.splitlines()}, what


def test_list_one_type(run):
    rc, out, _ = run("list", "Conv2d")
    assert rc == 0
    first, signature, forward = out.splitlines()
    assert first == "Conv2d (module: torch.nn.Conv2d)"
    assert forward == "  forward(input)"
    arguments = signature.strip().strip("()").split(", ")
    for argument in ("in_channels", "out_channels", "kernel_size", "stride=1", "padding=0", "bias=True"):
        assert argument in arguments, (argument, arguments)
    rc, out, _ = run("list", "relu")
    assert rc == 0 and out.startswith("relu (function: torch.relu)") and "forward(" not in out
    rc, out, _ = run("list", "MultiheadAttention")
    assert out.splitlines()[-1] == ("  forward(query, key, value, key_padding_mask, need_weights, attn_mask, "
                                    "average_attn_weights, is_causal)")


def test_list_a_registered_type(run):
    import specbuild
    from torch import nn
    specbuild.register_layer("Twice", lambda width=3: nn.Linear(width, width))
    try:
        rc, out, _ = run("list", "Twice")
        assert rc == 0 and out.startswith("Twice (user: ") and "width=3" in out
        assert "Twice" in {line.split()[0] for line in run("list", "layers")[1].splitlines()}
    finally:
        specbuild.unregister_layer("Twice")
    assert run("list", "Twice")[0] == 1


@pytest.mark.parametrize("name, suggestion", [("Conv2D", "'Conv2d'"), ("lossses", "'losses'"),
                                              ("layer", "'layers'"), ("Lienar", "'Linear'")])
def test_list_unknown_name_suggests(name, suggestion, run):
    rc, out, err = run("list", name)
    assert rc == 1 and out == ""
    assert f"nothing to list named {name!r}" in err and "did you mean" in err and suggestion in err


def test_list_nothing_close(run):
    rc, _, err = run("list", "zzzzqqq")
    assert rc == 1 and "try: specs, layers, functions, losses" in err
