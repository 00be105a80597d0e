"""The real-architecture specs equal the modules people train: torchvision's ResNet-18,
ResNet-50, VGG-11 and MobileNetV2 (their state_dicts load strictly, outputs equal), and a
hand-written nanoGPT-style GPT (keys, outputs, weight tying, causality)."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

import specbuild
from conftest import REPO
from nanogpt import GPT

SPECS = REPO / "specs"
REAL = ("resnet18", "resnet50", "vgg11", "mobilenet_v2", "unet", "gpt")
HANG_GUARD_S = 300


def _randomise_batch_norm(module: nn.Module) -> None:
    """Running statistics other than 0 and 1, so that eval mode tests them too."""
    generator = torch.Generator().manual_seed(0)
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.running_mean.copy_(torch.randn(layer.running_mean.shape, generator=generator))
            layer.running_var.copy_(torch.rand(layer.running_var.shape, generator=generator) + 0.5)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "vgg11", "mobilenet_v2"])
def test_torchvision_state_dict_loads_strictly_and_outputs_match(name):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)(weights=None).eval()
    _randomise_batch_norm(reference)
    model = specbuild.build_model(SPECS / f"{name}.yaml", overrides={"image_size": 64}).eval()
    assert list(model.state_dict()) == list(reference.state_dict())
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))
    checked = specbuild.spec.validate.check(SPECS / f"{name}.yaml", overrides={"image_size": 64})
    assert sum(s.params for s in checked.shapes[name].values()) == sum(p.numel() for p in reference.parameters())


def test_format_not_copying_does_the_work():
    """resnet18 in at most 45 lines, mobilenet_v2 in at most 60 (blank and comment lines aside),
    each with one definition per kind of block."""
    def lines(name):
        text = (SPECS / f"{name}.yaml").read_text().splitlines()
        return [line for line in text if line.strip() and not line.strip().startswith("#")]
    assert len(lines("resnet18")) <= 45
    assert len(lines("mobilenet_v2")) <= 60
    assert list(specbuild.spec.loader.load_spec(SPECS / "resnet18.yaml").data["blocks"]) == ["BasicBlock"]
    assert list(specbuild.spec.loader.load_spec(SPECS / "mobilenet_v2.yaml").data["blocks"]) == ["InvertedResidual"]


def test_gpt_equals_the_hand_written_nanogpt():
    torch.manual_seed(0)
    reference = GPT().eval()
    model = specbuild.build_model(SPECS / "gpt.yaml").eval()
    assert set(model.state_dict()) == set(reference.state_dict())
    model.load_state_dict(reference.state_dict(), strict=True)
    idx = torch.randint(0, 64, (3, 32))
    with torch.no_grad():
        torch.testing.assert_close(model(idx), reference(idx))
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())
    shapes = specbuild.spec.validate.check(SPECS / "gpt.yaml").shapes["gpt"]
    assert sum(s.params for s in shapes.values()) == sum(p.numel() for p in reference.parameters())


def test_gpt_head_is_tied_to_the_token_embedding_through_training():
    model = specbuild.build_model(SPECS / "gpt.yaml")
    assert model.lm_head.weight is model.transformer.wte.weight
    assert {"lm_head.weight", "transformer.wte.weight"} <= set(model.state_dict())
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    before = model.lm_head.weight.detach().clone()
    idx = torch.randint(0, 64, (4, 32))
    F.cross_entropy(model(idx).flatten(0, 1), torch.randint(0, 64, (4 * 32,))).backward()
    optimizer.step()
    assert not torch.equal(model.lm_head.weight, before)
    assert torch.equal(model.lm_head.weight, model.transformer.wte.weight)
    assert model.lm_head.weight is model.transformer.wte.weight


def test_gpt_is_causal():
    torch.manual_seed(1)
    model = specbuild.build_model(SPECS / "gpt.yaml").eval()
    idx = torch.randint(0, 64, (2, 32))
    changed = idx.clone()
    changed[:, 20] = (changed[:, 20] + 1) % 64
    with torch.no_grad():
        a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :20], b[:, :20])
    assert not torch.allclose(a[:, 20:], b[:, 20:])


def test_gpt_trains_and_its_loss_falls(tmp_path, capsys):
    from cli_runner import read_history, run_cli
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", str(SPECS / "gpt.yaml"), "--out", str(out), "--epochs", "3")
    assert code == 0, err
    history = read_history(out)
    assert len(history) == 3
    from specbuild.training.checkpoint import load_checkpoint
    assert load_checkpoint(out / "last.pt")["step"] >= 300     # a few hundred optimizer steps
    assert history[-1]["val_loss"] < 0.6 * math.log(64)  # a uniform guess is log(64)
    assert history[-1]["val_loss"] < history[0]["train_loss"]


NO_TORCH_SUMMARY = """
import sys, specbuild.cli.main
for path in sys.argv[1:]:
    assert specbuild.cli.main.main(["summary", path, "--set", "image_size=224"] if "image_size" in open(path).read()
                                   else ["summary", path]) == 0, path
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
assert not loaded, loaded
print("ok")
"""


def test_summary_of_every_real_architecture_needs_no_torch():
    run = subprocess.run([sys.executable, "-c", NO_TORCH_SUMMARY, *(str(SPECS / f"{n}.yaml") for n in REAL)],
                         capture_output=True, text=True, cwd=REPO, timeout=HANG_GUARD_S)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "total parameters: 25,557,032" in run.stdout        # resnet50 at 224 x 224
    assert "[N, 2048, 7, 7]" in run.stdout


def test_a_saved_torchvision_checkpoint_loads_into_resnet18_unchanged(tmp_path, capsys):
    """The file as torchvision users have it (torch.save of the state_dict): check-weights says it
    fits, build_model(weights=) and train --init-from load it; a renamed key and a head of
    another size are reported by name."""
    from cli_runner import run_cli
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    _randomise_batch_norm(reference)
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(reference.state_dict(), path)
    spec = str(SPECS / "resnet18.yaml")

    code, out, _ = run_cli(capsys, "check-weights", spec, str(path))
    assert code == 0 and out.strip().endswith(f"all {len(reference.state_dict())} tensors fit")
    model = specbuild.build_model(spec, overrides={"image_size": 64}, weights=path).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))

    renamed = dict(reference.state_dict())
    renamed["layer2.0.shortcut.0.weight"] = renamed.pop("layer2.0.downsample.0.weight")
    torch.save(renamed, tmp_path / "renamed.pth")
    code, out, _ = run_cli(capsys, "check-weights", spec, str(tmp_path / "renamed.pth"))
    assert code == 1 and "missing    layer2.0.downsample.0.weight" in out and "unexpected layer2.0.shortcut.0.weight" in out

    code, out, _ = run_cli(capsys, "check-weights", spec, str(path), "--set", "num_classes=10")
    assert code == 1 and "fc.weight" in out and "the model's is [10, 512], the file's [1000, 512]" in out


def test_a_sequence_longer_than_the_position_table_is_refused_at_validation():
    """arange positions fed to an Embedding with fewer rows would fail in every forward."""
    with pytest.raises(specbuild.errors.SpecError) as caught:
        specbuild.validate(SPECS / "gpt.yaml", overrides={"inputs.idx.shape": [40]})
    problem = caught.value.problems[0]
    assert problem.node == "wpe" and problem.path == "blocks.Body.layers[2].num_embeddings"
    assert problem.message == "Embedding 'wpe' has 32 rows, but 'pos' gives positions 0 to 39"
