"""`specbuild summary` and `specbuild.compiler.summary.summary`: one row per node (type, inputs,
output shape, parameters) and totals that equal the built model's parameter count, for
multi-input, multi-output, nested and multi-network specs.  A spec of over 10 billion
parameters is summarised from shape inference alone (fast, small, no torch), while
build_model refuses it before allocating anything."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from specbuild import SpecError
from specbuild.compiler.summary import render, summary

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "specs"
HEAD = "specbuild: 1\nname: m\n"


def _n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _rows(s):
    return {r.name: (r.type, r.inputs, r.output, r.params) for r in s.rows}


def _table(out: str) -> dict[str, list[str]]:
    """The CLI's table: node name (indent stripped) -> its cells, split on 2+ spaces."""
    rows = {}
    for line in out.splitlines():
        if not line.strip() or line.startswith(("total", "all networks", "node ", "-")) or ": inputs " in line:
            continue
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = cells[1:]
    return rows


def _total(out: str) -> list[int]:
    return [int(n.replace(",", "")) for n in re.findall(r"^total parameters: ([\d,]+) ", out, re.M)]


# --- multi-input, multi-output, nested, multi-network ----------------------------------------

def test_multi_input(run):
    from specbuild.compiler.compile import build_model
    [s] = summary(SPECS / "multi_input.yaml")
    assert s.name == "multi_input" and s.inputs == {"x1": "[N, 1, 28, 28]", "x2": "[N, 10]"}
    assert _rows(s) == {
        "x1_flat": ("flatten", ["x1"], "[N, 784]", 0),
        "fc1": ("Linear", ["x1_flat"], "[N, 128]", 784 * 128 + 128),
        "h1": ("relu", ["fc1"], "[N, 128]", 0),
        "fc2": ("Linear", ["x2"], "[N, 128]", 10 * 128 + 128),
        "h2": ("relu", ["fc2"], "[N, 128]", 0),
        "joined": ("cat", ["h1", "h2"], "[N, 256]", 0),
        "fc3": ("Linear", ["joined"], "[N, 10]", 256 * 10 + 10),
        "probs": ("softmax", ["fc3"], "[N, 10]", 0),
    }
    assert s.params == _n_params(build_model(SPECS / "multi_input.yaml")) == 104_458

    rc, out, err = run("summary", SPECS / "multi_input.yaml")
    assert rc == 0 and err == ""
    assert out.splitlines()[0] == "multi_input: inputs x1 [N, 1, 28, 28], x2 [N, 10]"
    assert out.splitlines()[1].split() == ["node", "type", "inputs", "output", "shape", "params"]
    table = _table(out)
    assert table["joined"] == ["cat", "h1, h2", "[N, 256]", "0"]
    assert table["fc1"] == ["Linear", "x1_flat", "[N, 128]", "100,480"]
    assert list(table) == list(_rows(s))
    assert _total(out) == [104_458] and "(408.0 KiB as float32)" in out


def test_multi_output(run):
    from specbuild.compiler.compile import build_model
    [s] = summary(SPECS / "multi_output.yaml")
    assert s.outputs == ["output1", "fc3"]
    rows = _rows(s)
    assert rows["features"] == ("relu", ["fc1"], "[N, 128]", 0)
    assert rows["fc2"] == ("Linear", ["features"], "[N, 10]", 1290)       # one head
    assert rows["output1"] == ("softmax", ["fc2"], "[N, 10]", 0)
    assert rows["fc3"] == ("Linear", ["features"], "[N, 1]", 129)         # the other
    assert rows["pool"] == ("MaxPool2d", ["relu_1"], "[N, 32, 14, 14]", 0)
    assert rows["fc1"][3] == 6272 * 128 + 128
    assert s.params == _n_params(build_model(SPECS / "multi_output.yaml"))
    rc, out, _ = run("summary", SPECS / "multi_output.yaml")
    assert rc == 0 and _table(out)["fc3"] == ["Linear", "features", "[N, 1]", "129"]
    assert _total(out) == [s.params]


NESTED = HEAD + """\
blocks:
  Down:
    layers:
      - {name: conv, type: Conv2d, out_channels: 4, kernel_size: 3, padding: 1}
      - {name: bn, type: BatchNorm2d}
      - {name: pool, type: MaxPool2d, kernel_size: 2}
inputs:
  x: [3, 16, 16]
layers:
  - {name: down, type: Down, repeat: 2}
  - {name: flat, type: flatten}
  - name: head
    type: Sequential
    layers:
      - {type: Linear, out_features: 32}
      - {type: ReLU}
  - {name: hidden, type: Linear, out_features: 32, repeat: 2}
  - {name: tied, share: hidden}
  - {name: out, type: Linear, out_features: 3}
"""


def test_nested_blocks_repeat_sequential_and_share(tmp_path, run):
    from specbuild.compiler.compile import build_model
    spec_file = tmp_path / "nested.yaml"
    spec_file.write_text(NESTED)
    [s] = summary(spec_file)
    conv0, conv1 = 3 * 4 * 9 + 4, 4 * 4 * 9 + 4
    rows = {r.name: (r.type, r.output, r.params, r.depth) for r in s.rows}
    assert rows == {
        "down": ("Down x2", "[N, 4, 4, 4]", conv0 + conv1 + 2 * 8, 0),
        "down.0.conv": ("Conv2d", "[N, 4, 16, 16]", conv0, 1),
        "down.0.bn": ("BatchNorm2d", "[N, 4, 16, 16]", 8, 1),
        "down.0.pool": ("MaxPool2d", "[N, 4, 8, 8]", 0, 1),
        "down.1.conv": ("Conv2d", "[N, 4, 8, 8]", conv1, 1),
        "down.1.bn": ("BatchNorm2d", "[N, 4, 8, 8]", 8, 1),
        "down.1.pool": ("MaxPool2d", "[N, 4, 4, 4]", 0, 1),
        "flat": ("flatten", "[N, 64]", 0, 0),
        "head": ("Sequential", "[N, 32]", 64 * 32 + 32, 0),
        "hidden": ("Linear x2", "[N, 32]", 2 * (32 * 32 + 32), 0),
        "hidden.0": ("Linear", "[N, 32]", 32 * 32 + 32, 1),
        "hidden.1": ("Linear", "[N, 32]", 32 * 32 + 32, 1),
        "tied": ("share(hidden)", "[N, 32]", 0, 0),          # shares: no new parameters
        "out": ("Linear", "[N, 3]", 32 * 3 + 3, 0),
    }
    assert [r.inputs for r in s.rows if r.name == "tied"] == [["hidden"]]
    model = build_model(spec_file)
    assert s.params == _n_params(model)
    for parent in ("down", "hidden"):        # a parent's count is its children's sum
        assert rows[parent][2] == sum(p for name, (_, _, p, depth) in rows.items()
                                      if depth == 1 and name.startswith(parent + "."))
    for name, module in model.named_children():     # and each top-level row is its submodule's count
        assert rows[name][2] == _n_params(module), name

    rc, out, _ = run("summary", spec_file)
    assert rc == 0 and _total(out) == [s.params]
    indented = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert set(indented) == {n for n, row in rows.items() if row[3] == 1}   # inner rows are indented
    assert _table(out)["tied"] == ["share(hidden)", "hidden", "[N, 32]", "0"]


def test_blocks_of_encoder_decoder():
    from specbuild.compiler.compile import build_model
    [s] = summary(SPECS / "encoder_decoder.yaml")
    rows = {r.name: (r.type, r.inputs, r.output, r.params, r.depth) for r in s.rows}
    assert rows["encoder"] == ("Encoder", ["x"], "[N, 64, 14, 14]", 640, 0)
    assert rows["encoder.conv1"] == ("Conv2d", ["x"], "[N, 64, 28, 28]", 640, 1)
    assert rows["decoder"] == ("Decoder", ["encoder"], "[N, 1, 28, 28]", 577, 0)
    assert rows["decoder.conv1"] == ("Conv2d", ["upsample"], "[N, 1, 28, 28]", 577, 1)
    model = build_model(SPECS / "encoder_decoder.yaml")
    assert s.params == _n_params(model) == 1217
    assert rows["encoder"][3] == _n_params(model.encoder)


def test_multi_network(run):
    from specbuild.compiler.compile import build_model
    summaries = summary(SPECS / "gan.yaml")
    assert [s.name for s in summaries] == ["generator", "discriminator"]
    generator, discriminator = summaries
    assert generator.inputs == {"z": "[N, 100]"} and discriminator.inputs == {"x": "[N, 784]"}
    assert _rows(generator) == {"main": ("Sequential", ["z"], "[N, 784]", 100 * 128 + 128 + 128 * 784 + 784)}
    assert _rows(discriminator) == {"main": ("Sequential", ["x"], "[N, 1]", 784 * 128 + 128 + 128 + 1)}
    for s in summaries:
        assert s.params == _n_params(build_model(SPECS / "gan.yaml", network=s.name))
    [only] = summary(SPECS / "gan.yaml", network="discriminator")
    assert only.name == "discriminator" and only.params == discriminator.params
    with pytest.raises(SpecError, match="no network 'discriminater'") as caught:
        summary(SPECS / "gan.yaml", network="discriminater")
    assert "did you mean 'discriminator'" in caught.value.hint

    rc, out, _ = run("summary", SPECS / "gan.yaml")
    assert rc == 0
    assert "generator: inputs z [N, 100]" in out and "discriminator: inputs x [N, 784]" in out
    assert _total(out) == [generator.params, discriminator.params]
    both = generator.params + discriminator.params
    assert re.search(rf"^all networks: {both:,} parameters \(", out, re.M)
    rc, out, _ = run("summary", SPECS / "gan.yaml", "--network", "generator")
    assert rc == 0 and "discriminator" not in out and "all networks" not in out
    assert _total(out) == [generator.params]
    rc, _, err = run("summary", SPECS / "gan.yaml", "--network", "critic")
    assert rc == 1 and "no network 'critic'" in err


def test_summary_follows_set(run):
    rc, out, _ = run("summary", SPECS / "lstm.yaml", "--set", "hidden_size=8", "--set", "seq_len=7")
    assert rc == 0
    assert _table(out)["lstm"][:3] == ["LSTM", "x", "([N, 7, 8], ([1, N, 8], [1, N, 8]))"]
    assert _total(out) == [4 * (8 * 1 + 8 * 8 + 2 * 8) + 8 + 1]
    assert summary(SPECS / "lstm.yaml", overrides={"hidden_size": 8})[0].params == _total(out)[0]


def test_summary_of_a_broken_spec_is_the_validation_error(tmp_path, run):
    spec_file = tmp_path / "bad.yaml"
    spec_file.write_text(HEAD + "inputs:\n  x: [4]\nlayers:\n  - {type: Linear, in_features: 5, out_features: 2}\n")
    rc, out, err = run("summary", spec_file)
    assert rc == 1 and out == ""
    assert err.startswith(f"{spec_file}:6:") and "in_features is 5 but its input has 4 features" in err


def test_render_matches_the_summary():
    summaries = summary(SPECS / "cnn.yaml")
    text = render(summaries)
    assert text.endswith("\n") and not text.endswith("\n\n")
    assert _total(text) == [summaries[0].params]
    assert list(_table(text)) == [r.name for r in summaries[0].rows]


# --- over 10 billion parameters ---------------------------------------------------------------

HUGE = HEAD + """\
inputs:
  x: [100000]
  tokens: {shape: [8], dtype: long}
layers:
  - {name: hidden, type: Linear, out_features: 100000, repeat: 2, in: x}
  - {name: head, type: Linear, out_features: 10}
  - {name: embed, type: Embedding, num_embeddings: 500000000, embedding_dim: 32, in: tokens}
  - {name: pooled, type: mean, dim: 1}
  - {name: joined, type: cat, dim: 1, in: [head, pooled]}
"""
HUGE_PARAMS = 2 * (100_000 * 100_000 + 100_000) + (100_000 * 10 + 10) + 500_000_000 * 32
assert HUGE_PARAMS > 10_000_000_000


@pytest.fixture
def huge(tmp_path) -> Path:
    path = tmp_path / "huge.yaml"
    path.write_text(HUGE)
    return path


# A hang guard only, never a speed check: the slowest child below (build_model, which imports
# torch) takes 1.4 s on the 2-core CI machine idle and 8 s beside two CPU-bound processes.
HANG_GUARD_S = 180


def _child(code: str, timeout: float = HANG_GUARD_S) -> dict:
    """Run `code` in a fresh interpreter (repo on the path); it prints one JSON line."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_huge_spec_summary_is_cheap_small_and_exact(huge):
    """`specbuild summary` in its own process: the wrapper below waits for it and reads its
    peak RSS from RUSAGE_CHILDREN, which then covers that one child only.  Its work is bounded
    by counting, not timing: shape inference visits each of the 6 layer copies once, whatever
    their sizes, and nothing imports torch (the next test)."""
    from specbuild.spec.validate import check
    assert check(huge).expanded_nodes == 6         # hidden x2, head, embed, pooled, joined
    result = _child(f"""
        import json, resource, subprocess, sys
        done = subprocess.run([sys.executable, "-m", "specbuild.cli.main", "summary", {str(huge)!r}],
                              capture_output=True, text=True)
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024    # KiB on Linux
        print(json.dumps({{"rc": done.returncode, "out": done.stdout, "err": done.stderr, "rss": rss}}))
    """)
    assert result["rc"] == 0, result["err"]
    assert result["rss"] < 2**30, f"peak RSS {result['rss'] / 2**20:.0f} MiB"
    total = _total(result["out"])
    assert total == [HUGE_PARAMS] and total[0] > 10_000_000_000
    assert "GiB as float32" in result["out"]
    table = _table(result["out"])
    assert table["hidden"][-1] == f"{2 * (100_000 * 100_000 + 100_000):,}"
    assert table["embed"] == ["Embedding", "tokens", "[N, 8, 32]", "16,000,000,000"]


def test_huge_spec_summary_never_imports_torch(huge):
    result = _child(f"""
        import contextlib, io, json, sys
        from specbuild.compiler.summary import render, summary
        from specbuild.cli.main import main
        total = summary({str(huge)!r})[0].params
        text = render(summary({str(huge)!r}))
        with contextlib.redirect_stdout(io.StringIO()) as out:
            rc = main(["summary", {str(huge)!r}])
        print(json.dumps({{"total": total, "rc": rc, "same": out.getvalue() == text,
                          "torch": sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))}}))
    """)
    assert result == {"total": HUGE_PARAMS, "rc": 0, "same": True, "torch": []}


def test_build_model_refuses_the_huge_spec_before_allocating(huge):
    # bounded work, counted: no torch module (Linear, Embedding...) is even constructed
    result = _child(f"""
        import json, resource
        import torch
        from specbuild import SpecError
        from specbuild.compiler.compile import build_model
        modules = 0
        real_init = torch.nn.Module.__init__
        def counted_init(self, *args, **kwargs):
            global modules
            modules += 1
            real_init(self, *args, **kwargs)
        torch.nn.Module.__init__ = counted_init
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        try:
            build_model({str(huge)!r})
            error = None
        except SpecError as e:
            error = {{"message": e.message, "hint": e.hint, "file": e.file}}
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps({{"error": error, "modules": modules, "before": before, "after": after}}))
    """)
    error = result["error"]
    assert error is not None, "build_model built a 36-billion-parameter model"
    assert error["message"] == f"the model has {HUGE_PARAMS:,} parameters, over the limit of 2,000,000,000"
    assert "max_params=" in error["hint"] and "GiB" in error["hint"]
    assert error["file"] == str(huge)
    assert result["modules"] == 0, "build_model constructed torch modules before refusing"
    # nothing big was allocated (torch's own import already peaks near 1.5 GB with the CUDA build)
    assert result["after"] - result["before"] < 100 * 2**20


def test_max_params_lowers_and_raises_the_limit(huge):
    import torch

    from specbuild.compiler.compile import DEFAULT_MAX_PARAMS, build_model, build_models
    cnn = SPECS / "cnn.yaml"
    [s] = summary(cnn)
    assert _n_params(build_model(cnn, max_params=s.params)) == s.params          # the limit is inclusive
    with pytest.raises(SpecError) as caught:
        build_model(cnn, max_params=s.params - 1)
    assert caught.value.message == f"the model has {s.params:,} parameters, over the limit of {s.params - 1:,}"
    with pytest.raises(SpecError, match="over the limit of 1,000"):
        build_models(SPECS / "gan.yaml", max_params=1000)
    assert DEFAULT_MAX_PARAMS < HUGE_PARAMS
    with torch.device("meta"):                     # raised: the huge model builds (on meta: no memory)
        model = build_model(huge, max_params=HUGE_PARAMS)
    assert model.embed.weight.device.type == "meta"
    assert _n_params(model) == HUGE_PARAMS
