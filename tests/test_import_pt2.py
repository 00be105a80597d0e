"""`specbuild import FILE.pt2` and `spec_from_exported`: an ExportedProgram (torch.export.save)
becomes a spec whose model loads the program's state_dict strictly and computes what
`ep.module()` computes; an operator outside the table is refused by name, without a traceback.
"""
from __future__ import annotations

import pytest
import torch
import torchvision
import yaml
from torch import nn

import import_models
import specbuild
from cli_runner import run_cli
from conftest import REPO
from specbuild.errors import SpecError
from specbuild.export.from_exported import spec_from_exported
from specbuild.spec.spec_yaml import spec_yaml
from specbuild.spec.validate import check


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.act(self.bn(self.conv(x)))), 1))


class Stack(nn.Module):
    """A Sequential with a Dropout and an Identity (which the program drops), LayerNorm, GELU."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 12), nn.Dropout(0.2), nn.Identity(), nn.LayerNorm(12), nn.GELU(),
                                 nn.Linear(12, 2))

    def forward(self, x):
        return torch.softmax(self.net(x), dim=-1)


class Cumulative(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.cumsum(self.fc(x), 1)


def _spec_cnn():
    return specbuild.build_model(REPO / "specs" / "cnn.yaml")


def saved(tmp_path, module, *inputs, name="model"):
    """The module (eval mode, seeded weights) exported and saved: (path, the program read back)."""
    path = tmp_path / f"{name}.pt2"
    torch.export.save(torch.export.export(module.eval(), inputs), path)
    return path, torch.export.load(path)


def assert_rebuilt(text: str, program, *inputs):
    model = specbuild.build_model(text).eval()
    model.load_state_dict(program.state_dict, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(model(*inputs), program.module()(*inputs))
    assert check(text).warnings == [], text


CASES = {
    "mlp": (MLP, (8,), "{name: act, type: ReLU}"),
    "cnn": (CNN, (1, 8, 8), "{name: bn, type: BatchNorm2d}"),
    "residual": (import_models.Residual, (16,), "{name: add, type: add, in: [x, fc2]}"),
    "spec_cnn": (_spec_cnn, (1, 28, 28), "{name: pool, type: MaxPool2d, kernel_size: 2}"),
    "stack": (Stack, (6,), "- {type: Identity}"),
    "unet": (import_models.TinyUNet, (1, 8, 8), "{name: up, type: ConvTranspose2d, out_channels: 8, kernel_size: 2, "
                                                "stride: 2}"),
    "shapes": (import_models.Shapes, (24,), "{name: view, type: view, shape: [-1, 4, 6]}"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_program_becomes_a_spec_with_its_weights_and_outputs(case, tmp_path):
    make, shape, fragment = CASES[case]
    torch.manual_seed(0)
    x = torch.randn(2, *shape)
    path, program = saved(tmp_path, make(), x, name=case)
    text = spec_yaml(spec_from_exported(path))
    assert fragment in text, text
    assert_rebuilt(text, program, x)
    assert spec_from_exported(program) == spec_from_exported(path)       # a program or its file


def test_cli_imports_a_pt2_without_input_shapes(tmp_path, capsys):
    torch.manual_seed(0)
    x = torch.randn(2, 1, 8, 8)
    path, program = saved(tmp_path, CNN(), x)
    out = tmp_path / "cnn.yaml"
    code, text, err = run_cli(capsys, "import", path, "-o", out)
    assert code == 0, err
    assert text == f"wrote {out}\n"
    data = yaml.safe_load(out.read_text())
    assert data["inputs"] == {"x": [1, 8, 8]} and data["name"] == "cnn"
    assert data["doc"] == f"Imported by `specbuild import` from {path}."
    assert_rebuilt(out.read_text(), program, x)
    code, text, err = run_cli(capsys, "import", path, "--name", "small")
    assert code == 0 and "name: small\n" in text


def test_torchvision_resnet18_merges_its_basic_blocks(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    path, program = saved(tmp_path, torchvision.models.resnet18(weights=None), x)
    text = spec_yaml(spec_from_exported(path))
    assert_rebuilt(text, program, x)
    data = yaml.safe_load(text)
    assert list(data["blocks"]) == ["BasicBlock"]
    assert set(data["blocks"]["BasicBlock"]["params"]) == {"out_channels", "stride", "with_downsample"}
    assert {"name": "layer2", "type": "BasicBlock", "out_channels": 128,
            "repeat": [{"stride": 2, "with_downsample": True}, {}]} in data["layers"]


def test_torchvision_mobilenet_v2_comes_back_as_one_block(tmp_path):
    """Its ReLU6 is aten.hardtanh(0, 6), its Conv2dNormActivation a Sequential subclass (children
    0, 1, 2 in a chain), its seventeen InvertedResiduals one definition, as from the module."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    path, program = saved(tmp_path, torchvision.models.mobilenet_v2(weights=None), x)
    text = spec_yaml(spec_from_exported(path))
    assert_rebuilt(text, program, x)
    data = yaml.safe_load(text)
    assert list(data["blocks"]) == ["InvertedResidual"] and "{type: ReLU6}" in text
    assert len(text.splitlines()) < 80


def test_an_operator_outside_the_table_is_refused_by_name(tmp_path, capsys):
    path, _ = saved(tmp_path, Cumulative(), torch.randn(2, 4))
    with pytest.raises(SpecError, match=r"aten\.cumsum \(node cumsum\) has no spec counterpart"):
        spec_from_exported(path)
    code, out, err = run_cli(capsys, "import", path)
    assert code == 1 and out == ""
    assert "aten.cumsum (node cumsum) has no spec counterpart" in err and "Traceback" not in err


@pytest.mark.parametrize("module, fragment", [
    (import_models.ReadsAParameter(), "aten.mul (node mul) reads `self.scale` directly"),
    (nn.Sequential(nn.Linear(4, 4)), "top-level modules are named 0"),
])
def test_what_a_spec_cannot_say_is_refused(module, fragment, tmp_path):
    path, _ = saved(tmp_path, module, torch.randn(2, 4))
    with pytest.raises(SpecError) as caught:
        spec_from_exported(path)
    assert fragment in str(caught.value)


@pytest.mark.parametrize("argv, code, fragment", [
    (["nowhere.pt2"], 1, "nowhere.pt2: no such file"),
    (["{models}:Residual"], 2, "--input-shape"),
    (["{pt2}", "--input-shape", "x=4"], 2, "--input-shape and --args are for MODULE.py:Class"),
    (["{notpt2}"], 1, "cannot be read as an ExportedProgram"),
])
def test_cli_refusals_are_plain(argv, code, fragment, tmp_path, capsys):
    path, _ = saved(tmp_path, MLP(), torch.randn(2, 8))
    bad = tmp_path / "bad.pt2"
    bad.write_text("no program")
    names = {"models": REPO / "tests" / "import_models.py", "pt2": path, "notpt2": bad}
    got, out, err = run_cli(capsys, "import", *[a.format(**names) for a in argv])
    assert got == code, err
    assert fragment in err and "Traceback" not in err
