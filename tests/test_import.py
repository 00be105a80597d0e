"""`specbuild import` and `specbuild.spec_from_module`: modules become specs whose models load
the module's state_dict strictly and compute the same outputs.

Every shipped spec goes round the circle (build, import, build again); modules that are no
shipped spec (torchvision's resnet18 and vgg11, tests/import_models.py) become specs too; a
module a spec cannot express is refused with the construct and its line.
"""
from __future__ import annotations

import pytest
import torch
import torchvision
import yaml

import import_models
import specbuild
from cli_runner import run_cli
from conftest import REPO, SHIPPED_SPECS
from specbuild.errors import SpecError
from specbuild.spec.spec_yaml import spec_yaml
from specbuild.spec.validate import check

SMALL = {"input_dim": 16, "num_heads": 2, "num_layers": 1, "seq_len": 12, "image_size": 64}
MODELS = REPO / "tests" / "import_models.py"


def example(graph) -> dict:
    torch.manual_seed(0)
    return {name: torch.zeros((2, *i.shape), dtype=i.torch_dtype()) if i.is_integer else torch.randn(2, *i.shape)
            for name, i in graph.inputs.items()}


def rebuilt(module, inputs: dict, **kwargs):
    """The spec of `module` as YAML, and the model built from it with the module's weights."""
    text = spec_yaml(specbuild.spec_from_module(module, inputs, **kwargs))
    model = specbuild.build_model(text).eval()
    model.load_state_dict(module.state_dict(), strict=True)
    return text, model


def assert_same(model, module, inputs: dict):
    with torch.no_grad():
        torch.testing.assert_close(model(*inputs.values()), module(*inputs.values()))


@pytest.mark.parametrize("path", SHIPPED_SPECS, ids=lambda p: p.stem)
def test_every_shipped_spec_goes_round_the_circle(path):
    params = specbuild.load_spec(path).data.get("params") or {}
    checked = check(path, overrides={k: v for k, v in SMALL.items() if k in params})
    for network, graph in checked.graphs.networks.items():
        first = specbuild.build_model(checked, network=network).eval()
        inputs = example(graph)
        text, again = rebuilt(first, inputs, name=network)
        assert list(again.state_dict()) == list(first.state_dict())
        assert_same(again, first, inputs)
        assert check(text).warnings == [], text


def test_torchvision_resnet18_defines_its_basic_block_once():
    torch.manual_seed(0)
    module = torchvision.models.resnet18(weights=None).eval()
    inputs = {"x": torch.randn(2, 3, 64, 64)}
    text, model = rebuilt(module, inputs)
    assert_same(model, module, inputs)
    data = yaml.safe_load(text)
    assert list(data["blocks"]) == ["BasicBlock"]
    assert set(data["blocks"]["BasicBlock"]["params"]) == {"out_channels", "stride", "with_downsample"}
    assert len([line for line in text.splitlines() if line.strip()]) < 80
    assert {"name": "layer2", "type": "BasicBlock", "out_channels": 128,
            "repeat": [{"stride": 2, "with_downsample": True}, {}]} in data["layers"]


def test_torchvision_vgg11():
    torch.manual_seed(0)
    module = torchvision.models.vgg11(weights=None).eval()
    inputs = {"x": torch.randn(2, 3, 32, 32)}
    _, model = rebuilt(module, inputs)
    assert_same(model, module, inputs)


def test_torchvision_mobilenet_v2():
    """Its pooling is F.adaptive_avg_pool2d, read as the AdaptiveAvgPool2d layer (no weights, no key);
    its seventeen InvertedResiduals become one definition."""
    torch.manual_seed(0)
    module = torchvision.models.mobilenet_v2(weights=None).eval()
    inputs = {"x": torch.randn(2, 3, 32, 32)}
    text, model = rebuilt(module, inputs)
    assert "{name: adaptive_avg_pool2d, type: AdaptiveAvgPool2d, output_size: [1, 1]}" in text
    with torch.no_grad():
        torch.testing.assert_close(model(inputs["x"]), module(inputs["x"]), rtol=0, atol=0)
    # one definition for all seventeen: the expansion conv the first block lacks is `when:` on
    # an item of `conv` (the others renumber as torchvision's append does), and the residual
    # some lack (x + conv) is read as conv + x, so that `when: false` leaves conv
    data = yaml.safe_load(text)
    assert list(data["blocks"]) == ["InvertedResidual"]
    block = data["blocks"]["InvertedResidual"]["layers"]
    assert block[0]["layers"][0]["when"] == "${with_conv_0}" and "when" not in block[0]["layers"][1]
    assert {"name": "add", "type": "add", "in": ["conv", "x"], "when": "${with_add}"} in block
    assert len(text.splitlines()) < 80


@pytest.mark.parametrize("name, shape, fragment", [
    ("Residual", (16,), "{name: add, type: add, in: [x, fc2]}"),
    ("TinyUNet", (1, 8, 8), "{name: cat, type: cat, dim: 1, in: [down, up]}"),
    ("Twice", (8,), "{name: fc_1, share: fc}"),
    ("Heads", (12,), "outputs: {label: cls, value: reg}"),
    ("Shapes", (24,), "{name: getitem, type: slice, at: '[:, -1, :]'}"),
    ("BlockList", (4,), "{name: h, type: PreNormBlock, repeat: 3}"),
    ("LayerList", (4,), "outputs: [head, layers]"),
    ("FunctionalPools", (1, 8, 8), "{name: avg_pool2d, type: AvgPool2d, kernel_size: 2, stride: 1}"),
])
def test_modules_that_are_no_shipped_spec(name, shape, fragment):
    torch.manual_seed(0)
    module = getattr(import_models, name)().eval()
    inputs = {"x": torch.randn(2, *shape)}
    text, model = rebuilt(module, inputs)
    assert fragment in text
    assert_same(model, module, inputs)
    assert check(text).warnings == []


def test_view_with_the_batch_size_becomes_minus_one():
    text, _ = rebuilt(import_models.Shapes().eval(), {"x": torch.randn(2, 24)})
    assert "{name: view, type: view, shape: [-1, 4, 6]}" in text


IF_LINE = MODELS.read_text().splitlines().index("        if x.sum() > 0:") + 1


@pytest.mark.parametrize("name, fragment", [
    ("DataDependent", f"import_models.py:{IF_LINE} in DataDependent.forward, `if x.sum() > 0:`: data-dependent "
                      "control flow"),
    ("ReadsAParameter", "forward reads `self.scale` directly"),
    ("ReluBetween", "the ModuleList `layers` is not called as a chain: `relu` (relu) runs between its items"),
    ("ParallelHeads", "the ModuleList `heads` is not called as a chain: heads.1 reads x, not only heads.0"),
    ("ItemReadTwice", "the ModuleList `h` is not called as a chain: an inner item's output is read by add"),
    ("DictParts", "forward calls `self.parts.a`, a module inside ModuleDict `parts`, not a child of its own"),
])
def test_what_a_spec_cannot_say_is_refused_with_the_construct(name, fragment):
    with pytest.raises(SpecError) as caught:
        specbuild.spec_from_module(getattr(import_models, name)(), {"x": torch.randn(2, 4)})
    assert fragment in str(caught.value)


def test_cli_writes_a_spec_that_validates(tmp_path, capsys):
    out = tmp_path / "unet.yaml"
    code, text, err = run_cli(capsys, "import", f"{MODELS}:TinyUNet", "--input-shape", "x=1,8,8", "-o", str(out))
    assert code == 0, err
    assert text == f"wrote {out}\n"
    assert check(str(out)).warnings == []
    code, _, _ = run_cli(capsys, "validate", str(out))
    assert code == 0
    code, text, err = run_cli(capsys, "import", f"{MODELS}:Residual", "--args", '{"width": 4}', "--input-shape", "x=4")
    assert code == 0 and "{name: fc1, type: Linear, out_features: 4}" in text
    code, text, err = run_cli(capsys, "import", f"{MODELS}:BlockList", "--args", '{"depth": 5}', "--input-shape",
                              "x=4")
    assert code == 0 and "{name: h, type: PreNormBlock, repeat: 5}" in text


@pytest.mark.parametrize("argv, fragment", [
    (["nowhere.py:Net", "--input-shape", "x=4"], "nowhere.py: no such file"),
    ([f"{MODELS}:Nope", "--input-shape", "x=4"], "has no class 'Nope' — its modules: Residual, TinyUNet"),
    ([f"{MODELS}:Residual", "--args", "{width: 4}", "--input-shape", "x=4"], "--args is not JSON"),
    ([f"{MODELS}:Residual", "--args", '{"depth": 4}', "--input-shape", "x=4"],
     "building it failed: TypeError"),
    ([f"{MODELS}:Residual", "--input-shape", "x=four"], "--input-shape 'x=four': write NAME=SIZES[:DTYPE]"),
    ([f"{MODELS}:Residual", "--input-shape", "x=16:fp8"], "--input-shape 'x=16:fp8': unknown dtype 'fp8'"),
    ([f"{MODELS}:DataDependent", "--input-shape", "x=4"], "data-dependent control flow"),
    ([f"{MODELS}:ReluBetween", "--input-shape", "x=4"], "ReluBetween: the ModuleList `layers` is not called as a "
                                                         "chain: `relu` (relu) runs between its items — a spec"),
])
def test_cli_refusals_are_plain(argv, fragment, capsys):
    code, out, err = run_cli(capsys, "import", *argv)
    assert code == 1, err
    assert fragment in err and "Traceback" not in err
