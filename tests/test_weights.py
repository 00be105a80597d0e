"""Foreign weights: a state_dict saved from a hand-written module fits the spec that describes it.

`specbuild check-weights SPEC FILE` reports, tensor by tensor, what is missing, unexpected or of
another shape; `build_model(spec, weights=FILE)` and `specbuild train SPEC --init-from FILE` load a
file that fits and refuse one that does not.  A file is never run: a pickle naming a class or a
function is refused before anything in it executes.
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import specbuild
from cli_runner import run_cli, write_text
from specbuild.compiler import weights
from specbuild.training import checkpoint
from specbuild.training.progress import Progress

SPEC = """\
specbuild: 1
name: small
inputs: {x: [1, 28, 28]}
layers:
  - {name: conv1, type: Conv2d, out_channels: 4, kernel_size: 3, padding: 1}
  - {name: bn1, type: BatchNorm2d}
  - {type: relu}
  - {name: pool, type: MaxPool2d, kernel_size: 4}
  - {type: flatten}
  - {name: fc, type: Linear, out_features: 10}
train:
  data: {dataset: mnist-sample}
  loss: {type: CrossEntropyLoss}
  epochs: 1
"""
QUICK = ("--limit", 32, "--no-download")
MISFIT_HINT = ("a tensor's name is its node's name and the parameter's (fc.weight): rename the file's tensors, "
               "or change the spec's node names or sizes")


class Small(nn.Module):
    """The hand-written module the spec describes: its state_dict keys are the spec's node names."""

    def __init__(self, in_channels: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 7 * 7, 10)


def saved(tmp_path: Path, name: str, state: dict) -> Path:
    path = tmp_path / name
    torch.save(state, path)
    return path


@pytest.fixture
def spec(tmp_path) -> str:
    return write_text(tmp_path, SPEC)


@pytest.fixture
def state() -> dict:
    torch.manual_seed(1)
    module = Small()
    with torch.no_grad():                 # running statistics unlike a fresh BatchNorm's
        module.bn1.running_mean.uniform_()
        module.bn1.running_var.uniform_(1, 2)
        module.bn1.num_batches_tracked.fill_(7)
    return module.state_dict()


def assert_same(tensors: dict, expected: dict, keys=None) -> None:
    keys = list(expected) if keys is None else keys
    for key in keys:
        assert torch.equal(tensors[key].cpu(), expected[key]), key


# --- a file that fits -----------------------------------------------------------------------

def test_a_hand_written_modules_state_dict_fits(capsys, spec, state, tmp_path):
    path = saved(tmp_path, "small.pt", state)
    assert run_cli(capsys, "check-weights", spec, path) == (0, "all 9 tensors fit\n", "")
    model = specbuild.build_model(spec, weights=path)
    assert list(model.state_dict()) == list(state)
    assert_same(model.state_dict(), state)


def test_a_safetensors_file_fits(capsys, spec, state, tmp_path):
    path = tmp_path / "small.safetensors"
    save_file(state, str(path))
    assert run_cli(capsys, "check-weights", spec, path) == (0, "all 9 tensors fit\n", "")
    assert_same(specbuild.build_model(spec, weights=path).state_dict(), state)


def test_another_dtype_fits_with_a_note(capsys, spec, state, tmp_path):
    path = saved(tmp_path, "half.pt", {**state, "fc.weight": state["fc.weight"].half()})
    assert run_cli(capsys, "check-weights", spec, path) == (
        0, "note       fc.weight  float16 in the file, float32 in the model: converted on loading\n"
           "all 9 tensors fit\n", "")
    model = specbuild.build_model(spec, weights=path)
    assert model.fc.weight.dtype == torch.float32
    assert torch.equal(model.fc.weight, state["fc.weight"].half().float())


def test_train_init_from_starts_from_the_files_weights(capsys, spec, state, tmp_path):
    """With lr 0 the parameters never move, so the run's last.pt holds the file's (the batch
    norm's running statistics do move in training: they are buffers, not parameters)."""
    path = saved(tmp_path, "small.pt", state)
    out = tmp_path / "run"
    rc, _, err = run_cli(capsys, "train", spec, "--init-from", path, "--lr", 0, "--out", out, *QUICK)
    assert rc == 0, err
    last = torch.load(out / "last.pt", weights_only=True)
    assert_same(last["model"], state, keys=[name for name, _ in Small().named_parameters()])
    assert last["init_from"] == str(path.resolve())
    assert (out / "spec.yaml").read_text().splitlines()[0] == f"# the weights started from {path.resolve()} (--init-from)"
    # a specbuild checkpoint is a weights file too: its model's weights are read
    assert run_cli(capsys, "check-weights", spec, out / "last.pt") == (0, "all 9 tensors fit\n", "")
    # a resumed run keeps the record
    rc, _, err = run_cli(capsys, "train", "--resume", out, "--epochs", 2, *QUICK)
    assert rc == 0, err
    assert torch.load(out / "last.pt", weights_only=True)["init_from"] == str(path.resolve())
    assert (out / "spec.yaml").read_text().startswith(f"# the weights started from {path.resolve()}")


def test_train_init_from_in_python(spec, state, tmp_path):
    path = saved(tmp_path, "small.pt", state)
    run = specbuild.train(spec, init_from=path, lr=0.0, limit=32, out=str(tmp_path / "run"), download=False,
                          progress=Progress(io.StringIO(), quiet=True))
    assert_same(dict(run.model.named_parameters()), {k: v for k, v in state.items() if "running" not in k
                                                     and "num_batches" not in k})


# --- files that do not fit ------------------------------------------------------------------

def test_a_renamed_tensor_is_missing_and_unexpected_with_did_you_mean(capsys, spec, state, tmp_path):
    renamed = dict(state)
    renamed["head.weight"] = renamed.pop("fc.weight")
    path = saved(tmp_path, "renamed.pt", renamed)
    report = ("missing    fc.weight    [10, 196] is not in the file (did you mean 'head.weight'?)\n"
              "unexpected head.weight  [10, 196] has no place in the model (did you mean 'fc.weight'?)\n"
              "2 problems: 1 missing, 1 unexpected (the model has 9 tensors, the file 9)")
    assert run_cli(capsys, "check-weights", spec, path) == (1, report + "\n", "")
    with pytest.raises(specbuild.SpecError) as error:
        specbuild.build_model(spec, weights=path)
    assert str(error.value) == f"{path}: these weights do not fit the model:\n{report} — {MISFIT_HINT}"


def test_a_tensor_of_another_shape_names_both_shapes(capsys, spec, tmp_path):
    path = saved(tmp_path, "rgb.pt", Small(in_channels=3).state_dict())
    report = ("shape      conv1.weight  the model's is [4, 1, 3, 3], the file's [4, 3, 3, 3]\n"
              "1 problem: 1 of another shape (the model has 9 tensors, the file 9)")
    assert run_cli(capsys, "check-weights", spec, path) == (1, report + "\n", "")
    out = tmp_path / "run"                         # refused before any training step: no run folder
    assert run_cli(capsys, "train", spec, "--init-from", path, "--out", out, *QUICK) == (
        1, "", f"{path}: these weights do not fit the model:\n{report} — {MISFIT_HINT}\n")
    assert not out.exists()


def test_a_prefix_on_every_name_is_pointed_out(capsys, spec, state, tmp_path):
    path = saved(tmp_path, "parallel.pt", {"module." + key: value for key, value in state.items()})
    rc, out, _ = run_cli(capsys, "check-weights", spec, path)
    assert rc == 1
    assert "missing    conv1.weight                    [4, 1, 3, 3] is not in the file (did you mean " \
           "'module.conv1.weight'?)" in out.splitlines()
    assert out.splitlines()[-2:] == [
        "hint: each file name is a model name with 'module.' in front: remove it from the file's names",
        "18 problems: 9 missing, 9 unexpected (the model has 9 tensors, the file 9)"]


# --- files that are refused -----------------------------------------------------------------

class Marker:
    """Unpickling this would create the marker file."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return exec, (f"open({self.path!r}, 'w').close()",)


def test_a_pickle_with_code_is_refused_and_never_run(capsys, spec, state, tmp_path):
    marker = tmp_path / "ran"
    zipped = saved(tmp_path, "zipped.pt", {**state, "fc.weight": Marker(marker)})
    plain = tmp_path / "plain.pth"
    plain.write_bytes(pickle.dumps({**state, "fc.weight": Marker(marker)}, protocol=4))
    hint = ("loading it would run code from the file; save the weights alone, torch.save(module.state_dict(), "
            "path), or as .safetensors")
    assert run_cli(capsys, "check-weights", spec, zipped) == (
        1, "", f"{zipped}: this file holds pickled Python objects (exec), not just tensors: refused to load it "
               f"— {hint}\n")
    assert run_cli(capsys, "check-weights", spec, plain) == (
        1, "", f"{plain}: this file holds pickled Python objects, not just tensors: refused to load it — {hint}\n")
    for path in (zipped, plain):
        assert run_cli(capsys, "train", spec, "--init-from", path, "--out", tmp_path / "run", *QUICK)[0] == 1
        with pytest.raises(specbuild.SpecError, match="refused to load it"):
            specbuild.build_model(spec, weights=path)
    assert not marker.exists()
    torch.load(zipped, weights_only=False)           # the file is live: loading it unsafely runs it
    assert marker.exists()


@pytest.mark.parametrize("name, content, line", [
    ("none.pt", None, "no weights file here — check the path"),
    ("folder", "folder", "this is a folder, not a weights file — give the file inside it: a .pt, .pth or .bin "
                         "file (torch.save of a state_dict), or a .safetensors file"),
    ("empty.pt", b"", "this file is not a readable weights file: it is empty — its write or download was cut off: "
                      "write it again"),
    ("noise.bin", b"\x13\x37 not torch", "this file is not a torch file (it starts with b'\\x137 n'; torch files "
                                         "are zip archives) — give a .pt, .pth or .bin file (torch.save of a "
                                         "state_dict), or a .safetensors file"),
    ("weights.npz", b"PK", "cannot tell what kind of weights file this is from its name (.npz) — give a .pt, .pth "
                           "or .bin file (torch.save of a state_dict), or a .safetensors file"),
    ("empty.safetensors", b"", "this file is not a readable safetensors file (it is empty) — the file is truncated "
                               "or not a safetensors file: was its download or write cut off?"),
])
def test_files_that_are_no_weights(capsys, spec, tmp_path, name, content, line):
    path = tmp_path / name
    if content == "folder":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    assert run_cli(capsys, "check-weights", spec, path) == (1, "", f"{path}: {line}\n")
    assert run_cli(capsys, "train", spec, "--init-from", path, "--out", tmp_path / "run", *QUICK) == (
        1, "", f"{path}: {line}\n")


def test_truncated_files_are_refused(capsys, spec, state, tmp_path):
    whole = saved(tmp_path, "whole.pt", state)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    rc, out, err = run_cli(capsys, "check-weights", spec, cut)
    assert (rc, out) == (1, "")
    assert err.startswith(f"{cut}: this file is not a readable weights file: a damaged or cut-short zip archive (") \
        and err.endswith(
        "— the file is truncated or damaged: was its write or download cut off?\n")
    whole = tmp_path / "whole.safetensors"
    save_file(state, str(whole))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    rc, out, err = run_cli(capsys, "check-weights", spec, cut)
    assert (rc, out) == (1, "")
    assert err.startswith(f"{cut}: this file is not a readable safetensors file (") and "cut off" in err


@pytest.mark.parametrize("content, line", [
    ([torch.zeros(1)], "this file holds a list, not a mapping of names to tensors — save module.state_dict() "
                       "(a dict of tensors by name)"),
    ({"fc.weight": torch.zeros(1), "epoch": 3}, "this file holds a int under 'epoch', not a tensor: it is not a "
                                                "plain state_dict — save module.state_dict() (a dict of tensors by "
                                                "name)"),
    ({"state_dict": {"fc.weight": torch.zeros(1)}, "epoch": 3},
     "this file holds a dict under 'state_dict', not a tensor: it is not a plain state_dict — the weights may be "
     "the dict under 'state_dict': save that part alone"),
    ({0: torch.zeros(1)}, "this file holds a key of type int (0); tensor names are strings — save "
                          "module.state_dict() (a dict of tensors by name)"),
])
def test_torch_files_that_are_no_state_dict(capsys, spec, tmp_path, content, line):
    path = saved(tmp_path, "other.pt", content)
    assert run_cli(capsys, "check-weights", spec, path) == (1, "", f"{path}: {line}\n")


def test_init_from_is_refused_with_resume_and_for_a_gan(capsys, spec, state, tmp_path):
    path = saved(tmp_path, "small.pt", state)
    assert run_cli(capsys, "train", spec, "--init-from", path, "--resume", tmp_path / "run") == (
        1, "", "--init-from and --resume do not go together: --resume restores the run's own weights, with "
               "everything else — drop --init-from to continue the run, or --resume to start a new run from the "
               "file's weights\n")
    gan = Path(__file__).resolve().parent.parent / "specs" / "gan.yaml"
    assert run_cli(capsys, "train", gan, "--init-from", path) == (
        1, "", f"{gan}: train: --init-from gives one network its weights, and this spec trains several (generator, "
               "discriminator) — train it from fresh weights, or continue a run of it with --resume\n")


# --- checkpoints, networks and tied weights -------------------------------------------------

def test_the_checkpoint_layout_is_the_one_training_writes():
    assert weights.CHECKPOINT_FORMAT == checkpoint.FORMAT


def test_a_checkpoint_of_several_networks_gives_the_one_named(state, tmp_path):
    other = {key: value + 1 for key, value in state.items()}
    path = saved(tmp_path, "gan.pt", {"format": checkpoint.FORMAT, "spec": {},
                                      "model": {"generator": state, "discriminator": other}})
    assert_same(weights.read_state_dict(path, network="discriminator"), other)
    with pytest.raises(specbuild.SpecError) as error:
        weights.read_state_dict(path)
    assert str(error.value) == (f"{path}: this checkpoint holds the weights of several networks (generator, "
                                "discriminator) — say which network's to take (network=, --network)")
    with pytest.raises(specbuild.SpecError, match="holds no network 'generater' — did you mean 'generator'"):
        weights.read_state_dict(path, network="generater")


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(3, 4, bias=False)
        self.head = nn.Linear(3, 4, bias=False)
        self.head.weight = self.embed.weight


def test_tied_weights_load_from_either_name():
    value = torch.arange(12.0).reshape(4, 3)
    both = Tied()
    weights.fit_weights(both, {"embed.weight": value, "head.weight": value})
    assert both.head.weight is both.embed.weight and torch.equal(both.head.weight, value)
    one = Tied()
    report = weights.fit_weights(one, {"embed.weight": value})
    assert report.fits and report.tied == {"head.weight": "embed.weight"}
    assert report.render() == ("note       head.weight  not in the file, but the model ties it to embed.weight: "
                               "loaded from it\nall 2 tensors fit")
    assert one.head.weight is one.embed.weight and torch.equal(one.head.weight, value)
    assert weights.compare(Tied().state_dict(), {"embed.weight": value}).missing == ["head.weight"]
