"""spec/spec_yaml.py: specs written as YAML a person would write, that read back to the same data."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import example, given, settings, strategies as st

from cli_runner import run_cli
from specbuild.spec.loader import load_spec
from specbuild.spec.spec_yaml import WIDTH, spec_yaml

REPO = Path(__file__).resolve().parent.parent
SPECS = sorted((REPO / "specs").glob("*.yaml"))


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_every_shipped_spec_reads_back_the_same_with_a_layer_a_line(path):
    data = load_spec(path).data
    text = spec_yaml(data)
    assert yaml.safe_load(text) == data
    assert text.startswith("specbuild: 1\nname: ")
    lines = text.splitlines()
    if "layers" in data:        # every top-level layer that fits on a line is one line, in order
        shown = [yaml.safe_load(line[4:]) for line in lines if line.startswith("  - {")]
        fits = [layer for layer in data["layers"] if not any(isinstance(v, list) and v and isinstance(v[0], dict)
                                                             for v in layer.values())
                and len(yaml.safe_dump(layer, default_flow_style=True, width=10**6).strip()) <= WIDTH - 4]
        assert fits and all(layer in shown for layer in fits)
        assert [layer for layer in data["layers"] if layer in shown] == shown
    assert sum(len(line) > WIDTH for line in lines) <= 2      # only a word too long to break overflows


def test_a_long_doc_is_a_folded_block_and_a_multi_line_one_literal():
    base = {"specbuild": 1, "name": "m", "inputs": {"x": [4]}, "layers": [{"type": "Linear", "out_features": 3}]}
    folded = spec_yaml({**base, "doc": "word " * 60 + "end\n"})
    assert folded.splitlines()[2] == "doc: >" and max(map(len, folded.splitlines())) <= WIDTH
    literal = spec_yaml({**base, "doc": "first line\nsecond line\n"})
    assert literal.splitlines()[2:5] == ["doc: |", "  first line", "  second line"]
    for text in (folded, literal):
        assert yaml.safe_load(text)["doc"] in ("word " * 60 + "end\n", "first line\nsecond line\n")


def test_a_section_too_long_for_a_line_opens_up_and_a_short_one_stays_flow():
    data = {"specbuild": 1, "name": "m", "inputs": {"x": [4]}, "layers": [{"type": "Linear", "out_features": 3}],
            "train": {"optimizer": {"type": "SGD", "lr": 0.1}, "epochs": 2,
                      "metrics": ["accuracy", "precision", "recall", "f1", "roc_auc"] * 3}}
    lines = spec_yaml(data).splitlines()
    assert "train:" in lines and "  optimizer: {type: SGD, lr: 0.1}" in lines and "  epochs: 2" in lines
    assert "  metrics:" in lines and "    - accuracy" in lines
    assert lines[2:4] == ["inputs:", "  x: [4]"]          # inputs as specs write them, one a line


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300), st.lists(st.text(max_size=20), max_size=4))
@example("\x85", [])                       # NEL: a line break to YAML, written raw it would read back as a space
@example("caf\u00e9 \u2028 end\n", ["\ufeff"])
def test_any_strings_read_back_the_same(doc, names):
    data = {"specbuild": 1, "name": "m", "doc": doc, "params": {f"p{i}": n for i, n in enumerate(names)},
            "inputs": {"x": [4]}, "layers": [{"name": "a", "type": "Linear", "out_features": 3}]}
    assert yaml.safe_load(spec_yaml(data)) == data


def test_a_runs_spec_yaml_is_written_so(tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = run_cli(capsys, "train", REPO / "specs" / "cnn.yaml", "--data", "mnist-sample", "--limit", 32,
                         "--epochs", 1, "--out", out)
    assert rc == 0, err
    text = (out / "spec.yaml").read_text()
    assert "  - {name: conv1, type: Conv2d, out_channels: 32, kernel_size: 3, padding: 1}" in text.splitlines()
    assert load_spec(out / "spec.yaml").data["train"]["epochs"] == 1
