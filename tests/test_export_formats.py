"""`specbuild export --to pt2|onnx|torchscript` and `specbuild.export_model(...)`: the files give the model's outputs.

Every shipped spec is exported to pt2 and TorchScript, loaded back (torch.export.load,
torch.jit.load) and run at two batch sizes (1 and 3; the example batch is 2) beside the model it
came from; the ONNX ones (fnn, cnn, lstm, gru, multi_input, multi_output, autoencoder, resnet18)
pass onnx.checker and, run with onnxruntime, match PyTorch within 1e-5.  The big ones are shrunk
with --set (SMALL, and vgg11's classifier narrowed): the formats do not care how wide a layer is.

A model a format cannot hold is refused with a SpecError naming the spec's node, in one line:
a registered layer whose forward branches on tensor values (torch.export refuses it), a layer
ONNX has no translation for, a forward TorchScript can neither compile nor trace faithfully.

Exports from a checkpoint of a tiny `specbuild train` run carry its trained weights; exports
from a spec say their weights are fresh.  The python format is tests/test_export_python.py's.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import specbuild
from specbuild.compiler.compile import build_model
from specbuild.export.formats import FRESH, example_inputs, export_model, load_source, output_names, write
from specbuild.shapes.core import Inferred

from conftest import REPO, SHIPPED_SPECS, VGG11_SMALL_CLASSIFIER

# the formats do not depend on a layer's width: the big specs, shrunk (as tests/test_train_specs.py does)
SMALL = {"input_dim": 16, "num_heads": 2, "num_layers": 1, "seq_len": 12, "hidden_size": 16, "image_size": 32,
         "num_classes": 10}
# specs whose every network torch.export refuses, and the node named: none of the shipped ones
PT2_REFUSED: dict[str, str] = {}
TORCHSCRIPT_REFUSED: dict[str, str] = {}
ONNX_SPECS = ["fnn", "cnn", "lstm", "gru", "multi_input", "multi_output", "autoencoder", "resnet18"]
BATCHES = (1, 3)
# torch 2.14 deprecates TorchScript (torch.jit.load warns); the format is still what it is
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated:FutureWarning")
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def overrides(path: Path) -> dict:
    params = specbuild.load_spec(path).data.get("params") or {}
    small = {name: value for name, value in SMALL.items() if name in params}
    return {**small, **VGG11_SMALL_CLASSIFIER} if path.stem == "vgg11" else small


def networks(path: Path) -> list[str]:
    data = specbuild.load_spec(path).data
    return list(data.get("networks") or {}) or [None]


CASES = [pytest.param(path, network, id=path.stem + (f"-{network}" if network else ""))
         for path in SHIPPED_SPECS for network in networks(path)]


@pytest.fixture(scope="module")
def sources():
    """Each shipped spec's Source (checked spec and built model), built once for every format."""
    built = {}

    def get(path: Path, network):
        if (path, network) not in built:
            torch.manual_seed(0)
            built[path, network] = load_source(path, network=network, overrides=overrides(path))
        return built[path, network]
    return get


def id_bound(source) -> int:
    """Token ids must index every Embedding: below the smallest num_embeddings (2 without one)."""
    sizes = [m.num_embeddings for m in source.model.modules() if isinstance(m, nn.Embedding)]
    return min(sizes, default=2)


def inputs_at(source, batch: int) -> tuple:
    return example_inputs(source.graph, batch, seed=batch, high=id_bound(source))


def leaves(value) -> list[torch.Tensor]:
    return torch.utils._pytree.tree_leaves(value)


def assert_same(got, want):
    got, want = leaves(got), leaves(want)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **TOLERANCE)


def run_model(model, inputs):
    with torch.no_grad():
        return model(*inputs)


# --- pt2 ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("path, network", CASES)
def test_pt2_round_trips_at_two_batch_sizes(path, network, sources, tmp_path):
    source = sources(path, network)
    out = tmp_path / "model.pt2"
    if path.stem in PT2_REFUSED:
        with pytest.raises(specbuild.SpecError) as caught:
            write(source, "pt2", out)
        assert caught.value.node == PT2_REFUSED[path.stem] and len(str(caught.value).splitlines()) == 1
        return
    assert write(source, "pt2", out) == out
    loaded = torch.export.load(out).module()
    for batch in BATCHES:
        inputs = inputs_at(source, batch)
        assert_same(run_model(loaded, inputs), run_model(source.model, inputs))


# --- TorchScript -------------------------------------------------------------------------------

@pytest.mark.parametrize("path, network", CASES)
def test_torchscript_round_trips_at_two_batch_sizes(path, network, sources, tmp_path):
    source = sources(path, network)
    out = tmp_path / "model.pt"
    if path.stem in TORCHSCRIPT_REFUSED:
        with pytest.raises(specbuild.SpecError) as caught:
            write(source, "torchscript", out)
        assert caught.value.node == TORCHSCRIPT_REFUSED[path.stem]
        return
    write(source, "torchscript", out)
    loaded = torch.jit.load(str(out))
    for batch in BATCHES:
        inputs = inputs_at(source, batch)
        assert_same(run_model(loaded, inputs), run_model(source.model, inputs))


# --- ONNX --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ONNX_SPECS)
def test_onnx_passes_the_checker_and_matches_onnxruntime(name, sources, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    source = sources(REPO / "specs" / f"{name}.yaml", None)
    out = write(source, "onnx", tmp_path / f"{name}.onnx")
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(source.graph.inputs)
    assert [o.name for o in session.get_outputs()] == output_names(source.graph)
    for batch in BATCHES:
        inputs = inputs_at(source, batch)
        got = session.run(None, {i.name: x.numpy() for i, x in zip(session.get_inputs(), inputs)})
        assert_same([torch.from_numpy(g) for g in got], run_model(source.model, inputs))


def test_onnx_without_its_packages_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxscript", None)       # import onnxscript raises ImportError
    with pytest.raises(specbuild.SpecError) as caught:
        export_model(REPO / "specs" / "fnn.yaml", "onnx", tmp_path / "fnn.onnx")
    assert "needs the package onnxscript" in caught.value.message and "specbuild[export]" in caught.value.hint
    assert not list(tmp_path.iterdir())


# --- refusals: the node and the reason, in one line ----------------------------------------------

class Gate(nn.Module):
    """Branches on the values of its input: torch.export (pt2, onnx) cannot capture it."""

    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return -x


class LambdaGate(nn.Module):
    """The same, with a lambda: TorchScript cannot compile it, and a trace would keep one branch."""

    def forward(self, x):
        scale = (lambda t: t * 2) if x.sum() > 0 else (lambda t: -t)
        return scale(x)


class FixedRows(nn.Module):
    """Reshapes to two rows, whatever the batch size: the batch dimension cannot vary."""

    def forward(self, x):
        return x if x.is_meta else x.reshape(2, -1)


def same_shape(args, shapes):
    return Inferred(shapes[0], {}, 0)


@pytest.fixture
def gates():
    specbuild.register_layer("Gate", Gate, args={}, shape=same_shape, replace=True)
    specbuild.register_layer("LambdaGate", LambdaGate, args={}, shape=same_shape, replace=True)
    specbuild.register_layer("FixedRows", FixedRows, args={}, shape=same_shape, replace=True)
    yield
    for name in ("Gate", "LambdaGate", "FixedRows"):
        specbuild.unregister_layer(name)


GATED = """specbuild: 1
name: gated
inputs: {x: [4]}
layers:
  - {name: fc, type: Linear, out_features: 3}
  - {name: gate, type: GATE}
  - {type: relu}
"""
NESTED = """specbuild: 1
name: nested
inputs: {x: [4]}
blocks:
  Res:
    inputs: [h]
    layers:
      - {name: lin, type: Linear, out_features: 4}
      - {name: g, type: Gate}
      - {type: add, in: [g, h]}
layers:
  - {name: fc, type: Linear, out_features: 4}
  - {name: res, type: Res, repeat: 2}
  - {type: relu}
"""
POOLED = """specbuild: 1
name: pooled
inputs: {x: [4, 8, 8]}
layers:
  - {name: conv, type: Conv2d, out_channels: 2, kernel_size: 1}
  - {name: pool, type: AdaptiveMaxPool2d, output_size: 3}
"""
BRANCHES = ("its forward branches on the values in a tensor (data-dependent control flow), which torch.export "
            "cannot capture: only shapes may steer a forward")


@pytest.mark.parametrize("to", ["pt2", "onnx"])
def test_a_forward_branching_on_values_is_refused_naming_the_node(to, gates, write_spec, tmp_path):
    spec = write_spec(GATED.replace("GATE", "Gate"))
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    with pytest.raises(specbuild.SpecError) as caught:
        export_model(spec, to, tmp_path / "gated")
    error = caught.value
    assert (error.path, error.node, error.line) == ("layers[1]", "gate", 6)
    assert error.message == f"cannot export to {to}: {BRANCHES}"
    assert "torchscript" in error.hint and len(str(error).splitlines()) == 1
    assert not list(tmp_path.iterdir())            # nothing written, not even a temp file
    source = load_source(spec)
    write(source, "torchscript", tmp_path / "gated.pt")     # TorchScript compiles the `if`: both branches kept
    scripted = torch.jit.load(str(tmp_path / "gated.pt"))
    for seed in range(4):
        x = torch.randn(2, 4, generator=torch.Generator().manual_seed(seed)) * 10
        assert_same(run_model(scripted, [x]), run_model(source.model, [x]))


def test_a_refused_node_inside_a_block_is_named_by_its_place(gates, tmp_path):
    with pytest.raises(specbuild.SpecError) as caught:
        export_model(NESTED, "pt2", tmp_path / "out.pt2")
    error = caught.value
    assert (error.path, error.node) == ("layers[1]", "res")
    assert error.message == f"cannot export to pt2: res.0.g (inside res): {BRANCHES}"


def test_a_layer_fixing_the_batch_size_is_refused_naming_the_node(gates, tmp_path):
    """torch says only that the batch got fixed; running the model at another batch size finds where."""
    with pytest.raises(specbuild.SpecError) as caught:
        export_model(GATED.replace("GATE", "FixedRows"), "pt2", tmp_path / "rows.pt2")
    error = caught.value
    assert (error.path, error.node) == ("layers[1]", "gate")
    assert error.message == "cannot export to pt2: the batch dimension cannot vary: the model fixes the batch size"


def test_a_layer_onnx_lacks_is_refused_naming_the_node(tmp_path):
    pytest.importorskip("onnxscript")
    with pytest.raises(specbuild.SpecError) as caught:
        export_model(POOLED, "onnx", tmp_path / "pooled.onnx")
    error = caught.value
    assert (error.path, error.node) == ("layers[1]", "pool")
    assert error.message == "cannot export to onnx: torch's aten.adaptive_max_pool2d has no ONNX translation"
    assert export_model(POOLED, "pt2", tmp_path / "pooled.pt2").exists()      # pt2 holds it


def test_a_forward_torchscript_cannot_compile_or_trace_is_refused(gates, tmp_path):
    with pytest.raises(specbuild.SpecError) as caught:
        export_model(GATED.replace("GATE", "LambdaGate"), "torchscript", tmp_path / "gated.pt")
    error = caught.value
    assert (error.path, error.node) == ("layers[1]", "gate")
    assert error.message.startswith("cannot export to torchscript: TorchScript cannot compile its forward, and a "
                                    "trace would keep one branch")
    assert not list(tmp_path.iterdir())


def test_the_cli_reports_a_refusal_in_one_line(gates, cli, write_spec, tmp_path):
    result = cli("export", write_spec(GATED.replace("GATE", "Gate")), "--to", "pt2", "-o", tmp_path / "g.pt2")
    assert result.rc == 1 and result.out == ""
    assert result.err.count("\n") == 1 and "layers[1] (gate): cannot export to pt2: its forward branches" in result.err


# --- the command: fresh weights from a spec, trained ones from a checkpoint ----------------------

def test_a_spec_exports_fresh_weights_to_its_name_here(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("export", REPO / "specs" / "cnn.yaml", "--to", "pt2")
    assert result.rc == 0, result.text
    assert result.out.splitlines() == ["wrote cnn.pt2: a torch.export program, for torch.export.load", FRESH]
    assert (tmp_path / "cnn.pt2").is_file() and [p.name for p in tmp_path.iterdir()] == ["cnn.pt2"]


def test_set_and_network_pick_the_model(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("export", REPO / "specs" / "gan.yaml", "--to", "torchscript", "--network", "generator")
    assert result.rc == 0 and result.out.startswith("wrote gan-generator.pt: "), result.text
    result = cli("export", REPO / "specs" / "gan.yaml", "--to", "torchscript")
    assert result.rc == 1 and "several networks (generator, discriminator)" in result.err
    result = cli("export", REPO / "specs" / "gru.yaml", "--to", "pt2", "--set", "seq_len=7", "-o", "g.pt2")
    assert result.rc == 0, result.text
    program = torch.export.load(tmp_path / "g.pt2")
    assert program.module()(torch.randn(5, 7, 1)).shape == (5, 1)


def test_bad_places_and_formats_are_input_errors(cli, tmp_path):
    spec = REPO / "specs" / "fnn.yaml"
    result = cli("export", spec, "--to", "pt2", "-o", tmp_path / "missing" / "fnn.pt2")
    assert result.rc == 1 and "the folder" in result.err and "does not exist" in result.err
    assert cli("export", spec, "--to", "keras").rc == 2
    assert cli("export", spec).rc == 2
    with pytest.raises(specbuild.SpecError, match="no export format 'onx' — did you mean 'onnx'"):
        export_model(spec, "onx")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """The last.pt of a tiny `specbuild train` run of specs/fnn.yaml."""
    from specbuild.cli.main import main
    out = tmp_path_factory.mktemp("run") / "fnn"
    rc = main(["train", str(REPO / "specs" / "fnn.yaml"), "--data", "mnist-sample", "--limit", "64", "--epochs", "1",
               "--out", str(out), "--no-download", "--seed", "0"])
    assert rc == 0
    return out / "last.pt"


@pytest.mark.parametrize("to", ["pt2", "torchscript", "onnx"])
def test_a_checkpoint_exports_its_trained_weights(to, checkpoint, cli, tmp_path, monkeypatch):
    if to == "onnx":
        pytest.importorskip("onnxscript")
    monkeypatch.chdir(tmp_path)
    result = cli("export", checkpoint, "--to", to)
    assert result.rc == 0, result.text
    suffix = {"pt2": ".pt2", "torchscript": ".pt", "onnx": ".onnx"}[to]
    assert result.out.splitlines()[0].startswith(f"wrote fnn{suffix}: ")
    assert result.out.splitlines()[1] == f"weights: trained, from the checkpoint {checkpoint}"
    trained = build_model(REPO / "specs" / "fnn.yaml", weights=checkpoint).eval()
    torch.manual_seed(1)
    fresh = build_model(REPO / "specs" / "fnn.yaml").eval()
    x = torch.randn(3, 1, 28, 28)
    if to == "pt2":
        got = run_model(torch.export.load(tmp_path / "fnn.pt2").module(), [x])
    elif to == "torchscript":
        got = run_model(torch.jit.load(str(tmp_path / "fnn.pt")), [x])
    else:
        import onnxruntime as ort
        session = ort.InferenceSession(str(tmp_path / "fnn.onnx"), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
    assert_same(got, run_model(trained, [x]))
    assert not torch.allclose(got, run_model(fresh, [x]))


def test_a_checkpoint_exports_to_python_with_its_weights_beside(checkpoint, cli, tmp_path):
    if importlib.util.find_spec("specbuild.export.python_code") is None:
        pytest.skip("the python format is not here yet")
    out = tmp_path / "net.py"
    result = cli("export", checkpoint, "--to", "python", "-o", out)
    assert result.rc == 0, result.text
    weights = tmp_path / "net.weights.pt"
    assert result.out.splitlines()[1].startswith(f"wrote {weights}: its trained weights")
    spec = importlib.util.spec_from_file_location("exported_fnn", out)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.Fnn()
    model.load_state_dict(torch.load(weights, weights_only=True))
    x = torch.randn(2, 1, 28, 28)
    assert_same(run_model(model.eval(), [x]), run_model(build_model(REPO / "specs" / "fnn.yaml", weights=checkpoint)
                                                        .eval(), [x]))


def test_the_checkpoint_itself_is_never_overwritten(checkpoint, tmp_path):
    copy = tmp_path / "fnn.pt"
    copy.write_bytes(checkpoint.read_bytes())
    with pytest.raises(specbuild.SpecError, match="it is the file exported from"):
        export_model(copy, "torchscript", copy)
    assert copy.read_bytes() == checkpoint.read_bytes()


def test_an_export_never_replaces_another_checkpoint(checkpoint, tmp_path, monkeypatch):
    """torchscript's default name is <spec name>.pt: in a folder holding a run's checkpoint of that
    name, the export is refused rather than replacing the run; a plain state_dict file is fair game."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fnn.pt").write_bytes(checkpoint.read_bytes())
    with pytest.raises(specbuild.SpecError, match="holds a training checkpoint"):
        export_model(REPO / "specs" / "fnn.yaml", "torchscript")
    assert (tmp_path / "fnn.pt").read_bytes() == checkpoint.read_bytes()
    torch.save({"w": torch.zeros(1)}, tmp_path / "fnn.pt")
    assert export_model(REPO / "specs" / "fnn.yaml", "torchscript") == Path("fnn.pt")
    assert isinstance(torch.jit.load(tmp_path / "fnn.pt"), torch.jit.ScriptModule)


def test_a_state_dict_is_no_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(build_model(REPO / "specs" / "fnn.yaml").state_dict(), path)
    with pytest.raises(specbuild.SpecError, match="not a specbuild checkpoint"):
        export_model(path, "pt2", tmp_path / "x.pt2")


# --- the public name --------------------------------------------------------------------------

def test_specbuild_export_model_is_lazy_and_stays_the_function():
    code = """
import sys
import specbuild
assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules)
first = specbuild.export_model
import specbuild.export.formats
assert specbuild.export_model is first and first.__name__ == "export_model"
from specbuild import export_model
assert export_model is first
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
