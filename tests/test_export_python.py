"""`specbuild export --to python`: every shipped spec (and every example of the spec format)
as one standalone .py file that, run where specbuild cannot be imported, loads the built
model's state_dict strictly and gives the built model's outputs.

The generated files run in ONE fresh process (`python -I -S`, an empty environment, cwd the
tmp folder): isolated mode leaves out PYTHONPATH, the user site and the cwd, and -S the site
hooks, among them the .pth that makes the editable specbuild importable.  torch's folder is
added to sys.path as a plain folder, so torch imports and specbuild does not, which the
driver asserts first.  One process for all files keeps torch's import to one.
"""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import specbuild
from specbuild.compiler.compile import build_model
from specbuild.export.python_code import class_name, python_source
from specbuild.spec.validate import check

from conftest import VGG11_SMALL_CLASSIFIER

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
SMALL_SEQUENCE = {"input_dim": 16, "num_heads": 2, "seq_len": 12}
OVERRIDES = {   # small sizes, same structure (vgg11's classifier would be 25088 x 4096 otherwise)
    "resnet18": {"image_size": 32}, "resnet50": {"image_size": 32}, "mobilenet_v2": {"image_size": 32},
    "vgg11": {"image_size": 32, "num_classes": 10, **VGG11_SMALL_CLASSIFIER},
    "transformer": {**SMALL_SEQUENCE, "num_layers": 1}, "attention": SMALL_SEQUENCE,
}
ALLOWED_IMPORTS = {"torch", "torch.nn", "torch.nn.functional", "operator"}

# A block whose params forward reads; `repeat:` copies with their own values; a share, a dict output.
BLOCK_PARAMS = """
specbuild: 1
name: heads
inputs:
  x: [8, 16]
blocks:
  Attend:
    params: {n_head: 2, p: 0.0, proj: false}
    layers:
      - {name: qkv, type: Linear, out_features: 48}
      - {name: parts, type: chunk, chunks: 3, dim: 2}
      - {name: q, type: item, index: 0}
      - {name: heads, type: unflatten, in: q, dim: 2, sizes: ["${n_head}", "${16 // n_head}"]}
      - {name: by_head, type: transpose, dim0: 1, dim1: 2}
      - {name: y, type: scaled_dot_product_attention, in: [by_head, by_head, by_head], dropout_p: "${p}"}
      - {name: back, type: transpose, in: y, dim0: 1, dim1: 2}
      - {name: joined, type: flatten, start_dim: 2}
      - {name: out, type: Linear, out_features: 16, when: "${proj}"}
layers:
  - {name: a, type: Attend, n_head: 4, repeat: [{proj: true}, {}, {n_head: 8, p: 0.1}]}
  - {name: again, share: a}
  - {name: last, type: slice, at: "[:, -1]"}
  - {name: probs, type: softmax, dim: 1}
outputs: {probs: probs, features: again}
"""


# Beyond the shipped specs: names that would hide what the generated code uses (F, torch, nn),
# a required param after defaulted ones, conditional Sequential items, every kind of tensor
# function call; blocks of two inputs and blocks inside blocks whose sizes differ per use; a
# `repeat:` over a block param, one copy in one use (the layer itself, as compile builds it).
NAMES = """
specbuild: 1
name: edge_cases
params: {w: 8}
inputs:
  x: [4, 8]
  mask: {shape: [4, 8], dtype: bool}
blocks:
  Stack:
    params: {stride: 1, planes: ~, n: 2, nn: 3, conv: 1.5}
    doc: A stack of linears.
    layers:
      - {name: F, type: Linear, out_features: "${planes}", doc: the first one}
      - {name: torch_, type: Linear, out_features: "${planes}", repeat: "${n}"}
      - {name: scaled, type: mul, in: [torch_, F]}
      - name: conv
        type: Sequential
        layers:
          - {type: ReLU, when: "${stride != 1}"}
          - {type: Linear, out_features: "${planes}"}
          - {type: Dropout, p: 0.1, when: "${nn > 2}"}
      - {name: picked, type: clamp, min: "${-conv}", max: "${conv}"}
    outputs: [picked, scaled]
layers:
  - {name: s1, type: Stack, planes: 8, in: x}
  - {name: s1a, type: item, index: 0}
  - {name: s2, type: Stack, planes: 16, stride: 2, n: 3, nn: 1, in: s1a}
  - {name: s2a, type: item, index: 0}
  - {name: v, type: view, shape: [-1, 4, 16]}
  - {name: e, type: expand, in: v, size: [-1, 4, 16]}
  - {name: c, type: constant, in: x, value: [[1, 0], [0, 1]], dtype: float32}
  - {name: mf, type: masked_fill, in: [x, mask], value: -.inf}
  - {name: sm, type: softmax, dim: -1}
  - {name: st, type: stack, in: [sm, x], dim: 1}
  - {name: dv, type: div, in: [x, x]}
  - {name: wh, type: where, in: [mask, x, dv]}
  - {name: rp, type: repeat_interleave, in: wh, repeats: 2, dim: 1}
  - {name: xt, type: transpose, in: x, dim0: 1, dim1: 2}
  - {name: mm, type: matmul, in: [x, xt]}
outputs: [e, c, st, rp, mm]
"""
NESTED = """
specbuild: 1
name: torch
inputs:
  x: [6]
  y: [5]
blocks:
  Mix:
    inputs: [a, b]
    layers:
      - {name: fa, type: Linear, out_features: 7, in: a}
      - {name: fb, type: Linear, out_features: 7, in: b}
      - {name: nb, type: LayerNorm, in: b}
      - {name: s, type: add, in: [fa, fb]}
    outputs: [s, nb]
  Proj:
    params: {out: ~}
    layers:
      - {name: fc, type: Linear, out_features: "${out}"}
  Outer:
    params: {k: 1}
    inputs: [p, q]
    layers:
      - {name: seq, type: Sequential, in: p,
         layers: [{type: Proj, out: "${k * 3}"}, {type: ReLU}, {type: Proj, out: 5}]}
      - {name: mix, type: Mix, in: [seq, q]}
      - {name: m0, type: item, index: 0}
layers:
  - {name: F, type: Linear, out_features: 6, in: x}
  - {name: o1, type: Outer, in: [F, y]}
  - {name: o2, type: Outer, k: 2, in: [x, y]}
  - {name: plain, type: Proj, out: 4, in: o2, repeat: 3}
  - {name: sum, type: add, in: [o1, o2]}
outputs: {total: sum, plain: plain}
"""
LOOPS = """
specbuild: 1
name: loops
inputs:
  x: [6]
blocks:
  Deep:
    params: {n: 2, width: 8}
    layers:
      - {name: body, type: Linear, out_features: "${width}", repeat: "${n}"}
      - {name: extra, type: Linear, out_features: 3, in: x, when: "${n > 2}"}
      - {name: o, type: add, in: [body, extra], when: "${n > 2 and width == 3}"}
layers:
  - {name: d1, type: Deep}
  - {name: d2, type: Deep, n: 3, width: 3}
  - {name: d3, type: Deep, n: 1, width: 3}
"""


DRIVER = '''
import importlib.util, json, sys
sys.path.append(sys.argv[1])     # torch's site-packages, as a plain folder: no .pth file runs
try:
    import specbuild
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("specbuild is importable: the check proves nothing")
import torch

for case in json.load(open("manifest.json")):
    found = importlib.util.spec_from_file_location(case["module"], case["file"])
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    model = getattr(module, case["class"])()
    model.load_state_dict(torch.load(case["state"], weights_only=True), strict=True)
    model.eval()
    with torch.no_grad():
        out = model(*torch.load(case["inputs"], weights_only=True))
    torch.save(out, case["out"])
assert "specbuild" not in sys.modules
print("ran", len(json.load(open("manifest.json"))))
'''


def _doc_examples() -> list[tuple[str, str]]:
    text = (ROOT / "docs" / "spec-format.md").read_text()
    return [(f"doc{i}", m.group(1)) for i, m in enumerate(re.finditer(r"```yaml\n(.*?)```", text, re.S))]


def _inputs(checked, graph, generator) -> list:
    sizes = [node.args["num_embeddings"] for g in [*checked.graphs.networks.values(), *checked.graphs.blocks.values()]
             for node in g.nodes.values() if isinstance(node.args.get("num_embeddings"), int)]
    high = min(sizes, default=2)
    out = []
    for spec_input in graph.inputs.values():
        shape, dtype = (2, *spec_input.shape), spec_input.torch_dtype()
        if dtype.is_floating_point:
            out.append(torch.randn(shape, generator=generator).to(dtype))
        elif dtype == torch.bool:
            out.append(torch.randint(0, 2, shape, generator=generator).bool())
        else:
            out.append(torch.randint(0, high, shape, generator=generator).to(dtype))
    return out


def _imports(source: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add(node.module)
    return found


def test_every_spec_runs_standalone(tmp_path):
    cases = [(path.stem, path, OVERRIDES.get(path.stem)) for path in SPECS]
    cases += [(name, text, None) for name, text in _doc_examples()]
    cases += [(name, text, None) for name, text in [("params", BLOCK_PARAMS), ("names", NAMES), ("nested", NESTED),
                                                     ("loops", LOOPS)]]
    manifest, expected, generator = [], {}, torch.Generator().manual_seed(0)
    for stem, spec, overrides in cases:
        checked = check(spec, overrides=overrides)
        source = python_source(checked)
        assert _imports(source) <= ALLOWED_IMPORTS, stem
        assert max(len(line) for line in source.splitlines()) <= 110, stem
        assert "getattr(" not in source and "= None" not in source.replace("=None", ""), stem
        (tmp_path / f"{stem}_model.py").write_text(source)
        for network in checked.graphs.networks:
            tag = f"{stem}.{network}"
            model = build_model(checked, network=network).eval()
            inputs = _inputs(checked, checked.graphs.networks[network], generator)
            with torch.no_grad():
                expected[tag] = model(*inputs)
            torch.save(model.state_dict(), tmp_path / f"{tag}.state.pt")
            torch.save(inputs, tmp_path / f"{tag}.inputs.pt")
            assert f"class {class_name(network)}(nn.Module):" in source, tag
            manifest.append({"module": f"{stem}_model", "file": f"{stem}_model.py", "class": class_name(network),
                             "state": f"{tag}.state.pt", "inputs": f"{tag}.inputs.pt", "out": f"{tag}.out.pt"})
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "driver.py").write_text(DRIVER)
    site_packages = str(Path(torch.__file__).resolve().parent.parent)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-I", "-S", "driver.py", site_packages], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"ran {len(manifest)}" in done.stdout
    for case in manifest:
        tag = case["state"].removesuffix(".state.pt")
        torch.testing.assert_close(torch.load(tmp_path / case["out"], weights_only=True), expected[tag],
                                   equal_nan=True, msg=lambda m, tag=tag: f"{tag}: {m}")


def _tree(source: str) -> dict:
    return {node.name: node for node in ast.parse(source).body if isinstance(node, ast.ClassDef)}


def _method(cls: ast.ClassDef, name: str) -> ast.FunctionDef:
    return next(node for node in cls.body if isinstance(node, ast.FunctionDef) and node.name == name)


def test_resnet18_has_one_basic_block_class_with_its_params():
    source = python_source(check(ROOT / "specs" / "resnet18.yaml", overrides={"image_size": 32}))
    assert source.count("class BasicBlock(nn.Module):") == 1
    block = _tree(source)["BasicBlock"]
    init = _method(block, "__init__")
    names = [a.arg for a in init.args.args + init.args.kwonlyargs]
    assert names[:4] == ["self", "planes", "stride", "down"]
    assert [ast.literal_eval(d) for d in init.args.defaults] == [1, False]
    assert any(isinstance(n, ast.If) and ast.unparse(n.test) == "down" for n in init.body)
    assert "self.downsample(x) if self.down else x" in ast.unparse(_method(block, "forward"))
    assert "BasicBlock(planes=128, stride=2, down=True, in_channels=64)" in source
    assert "class Resnet18(nn.Module):" in source and "ResNet-18 (He et al. 2015)" in source


def test_sizes_that_differ_between_uses_are_constructor_arguments():
    source = python_source(check(ROOT / "specs" / "unet.yaml"))
    assert source.count("class DoubleConv(nn.Module):") == 1 and source.count("class Up(nn.Module):") == 1
    assert "def __init__(self, out, *, in_channels):" in source
    assert "self.conv1 = nn.Conv2d(in_channels, out, 3, padding=1, bias=False)" in source
    assert "self.bn1 = nn.BatchNorm2d(out)" in source
    assert "self.conv = DoubleConv(out=out, in_channels=conv_in_channels)" in source    # inside Up
    assert "self.up1 = Up(out=32, x_in_channels=64, conv_in_channels=64)" in source


def test_gpt_ties_lm_head_and_calls_attention_plainly():
    checked = check(ROOT / "specs" / "gpt.yaml")
    source = python_source(checked)
    state = build_model(checked).state_dict()
    with_state = python_source(checked, state=state)    # the weights are noted, never written out
    assert f"({len(state)} tensors," in with_state and with_state.split("import torch\n")[1] == source.split(
        "import torch\n")[1]
    assert "self.lm_head.weight = self.transformer.wte.weight" in source
    assert "F.scaled_dot_product_attention(q_t, k_t, v_t, is_causal=True)" in source
    assert "torch.arange(x.size(1), device=x.device)" in source
    assert list(_tree(source)) == ["CausalSelfAttention", "MLP", "Block", "Body", "Gpt"]


def test_gan_gives_both_networks_or_the_one_asked_for():
    checked = check(ROOT / "specs" / "gan.yaml")
    both = python_source(checked)
    assert {"Generator", "Discriminator"} <= set(_tree(both))
    assert '__all__ = ["Generator", "Discriminator"]' in both
    one = python_source(checked, network="generator")
    assert list(_tree(one)) == ["Generator"]
    with pytest.raises(specbuild.SpecError, match="no network 'generatr'.*did you mean 'generator'"):
        python_source(checked, network="generatr")


def test_block_params_read_in_forward_are_attributes():
    source = python_source(check(BLOCK_PARAMS))
    attend = _tree(source)["Attend"]
    init, forward = ast.unparse(_method(attend, "__init__")), ast.unparse(_method(attend, "forward"))
    assert "def __init__(self, n_head=2, p=0.0, proj=False):" in init
    assert "self.n_head = n_head" in init and "self.qkv = nn.Linear(16, 48)" in init
    assert "sizes=(self.n_head, 16 // self.n_head)" in forward
    assert "dropout_p=self.p if self.training else 0.0" in forward
    assert "out = self.out(joined) if self.proj else joined" in forward
    assert "again = self.a(a)" in source and "return {'probs': probs, 'features': again}" in ast.unparse(
        _tree(source)["Heads"])


def test_a_type_registered_from_python_cannot_be_exported():
    from torch import nn

    specbuild.register_layer("Doubler", nn.Identity, args={}, shape=lambda args, shapes: shapes[0])
    try:
        checked = check("specbuild: 1\nname: m\ninputs: {x: [4]}\nlayers:\n"
                        "  - {name: fc, type: Linear, out_features: 4}\n  - {name: twice, type: Doubler}\n")
        with pytest.raises(specbuild.SpecError, match="'Doubler' was registered from Python") as error:
            python_source(checked)
        assert error.value.node == "twice"
    finally:
        specbuild.unregister_layer("Doubler")
