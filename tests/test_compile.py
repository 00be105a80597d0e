"""Unit tests of the compiler (specbuild.compiler.compile): what the GraphModule looks like, how
inputs, outputs, share, repeat, blocks, Sequential and wrappers become torch, and what
build_model accepts.  The shipped specs against hand-written modules are in
test_specs_oracle.py; the small specs here isolate one feature each."""
from __future__ import annotations

import inspect
import json
import warnings
from pathlib import Path

import pytest
import torch
import torch.fx as fx
from torch import nn

import specbuild
from specbuild import SpecError
from specbuild.compiler.compile import build_model, build_models
from specbuild.spec.validate import check

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "specs"
HEAD = "specbuild: 1\nname: m\n"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _modules_called(model: fx.GraphModule) -> list[str]:
    return [n.target for n in model.graph.nodes if n.op == "call_module"]


# --- names and generated code ------------------------------------------------------------

def test_submodules_are_named_after_the_nodes():
    model = build_model(SPECS / "cnn.yaml")
    assert [name for name, _ in model.named_children()] == ["conv1", "pool", "fc1", "fc2"]
    assert isinstance(model.conv1, nn.Conv2d) and isinstance(model.pool, nn.MaxPool2d)
    assert list(model.state_dict()) == ["conv1.weight", "conv1.bias", "fc1.weight", "fc1.bias",
                                        "fc2.weight", "fc2.bias"]
    assert _modules_called(model) == ["conv1", "pool", "fc1", "fc2"]
    assert type(model).__name__ == "Cnn"                    # the class is named after the spec


def test_generated_code_is_readable():
    model = build_model(SPECS / "cnn.yaml")
    code = model.code
    for line in ("def forward(self, x):", "conv1 = self.conv1(x)", "relu_1 = torch.relu(conv1)",
                 "pool = self.pool(relu_1)", "flatten_3 = torch.flatten(pool, start_dim = 1)",
                 "fc1 = self.fc1(flatten_3)", "fc2 = self.fc2(", "probs = torch.softmax(fc2, dim = 1)",
                 "return probs"):
        assert line in code, (line, code)
    assert "getattr" not in code and "_tensor_constant" not in code


def test_tensor_functions_become_direct_calls():
    text = HEAD + """\
inputs:
  a: [4, 6]
  b: [4, 6]
layers:
  - {name: both, type: cat, dim: 1, in: [a, b]}
  - {name: total, type: add, in: [a, b, a]}
  - {name: last, type: slice, at: "[:, -1, :]", in: total}
  - {name: flat, type: view, shape: [-1, 48], in: both}
outputs: [last, flat]
"""
    model = build_model(text)
    code = model.code
    assert "torch.cat([a, b], dim = 1)" in code
    assert "total_0 = a + b" in code and "total = total_0 + a" in code       # folded pairwise
    assert "last = total[(slice(None, None, None), -1, slice(None, None, None))]" in code
    assert "flat = both.view(-1, 48)" in code
    a, b = torch.randn(2, 4, 6), torch.randn(2, 4, 6)
    last, flat = model(a, b)
    torch.testing.assert_close(last, (a + b + a)[:, -1, :])
    torch.testing.assert_close(flat, torch.cat([a, b], 1).view(-1, 48))


def test_graph_lint_passes_for_every_shipped_spec():
    for path in sorted(SPECS.glob("*.yaml")):
        checked = check(path)
        for network in checked.graphs.networks:
            model = build_model(checked, network=network, max_params=2 * 10**8)
            model.graph.lint()
            for child in model.modules():
                if isinstance(child, fx.GraphModule):
                    child.graph.lint()


# --- inputs and outputs ---------------------------------------------------------------------

def test_inputs_are_positional_in_declared_order():
    text = HEAD + """\
inputs:
  zeta: [4]
  alpha: [4]
layers:
  - {name: fc, type: Linear, out_features: 4, in: zeta}
  - {name: diff, type: sub, in: [fc, alpha]}
"""
    model = build_model(text)
    assert list(inspect.signature(model.forward).parameters) == ["zeta", "alpha"]   # not sorted
    assert [n.name for n in model.graph.nodes if n.op == "placeholder"] == ["zeta", "alpha"]
    u, v = torch.randn(3, 4), torch.randn(3, 4)
    with torch.no_grad():
        torch.testing.assert_close(model(u, v), model.fc(u) - v)
        torch.testing.assert_close(model(zeta=u, alpha=v), model(u, v))
        assert not torch.allclose(model(u, v), model(v, u))                   # the order matters


def test_multi_input_spec_takes_its_inputs_in_order():
    model = build_model(SPECS / "multi_input.yaml").eval()
    assert list(inspect.signature(model.forward).parameters) == ["x1", "x2"]
    x1, x2 = torch.randn(2, 1, 28, 28), torch.randn(2, 10)
    with torch.no_grad():
        out = model(x1, x2)
        expected = torch.softmax(model.fc3(torch.cat([torch.relu(model.fc1(x1.flatten(1))),
                                                      torch.relu(model.fc2(x2))], 1)), 1)
    torch.testing.assert_close(out, expected)
    with pytest.raises(RuntimeError):
        model(x2, x1)


OUTPUTS_BODY = """\
inputs:
  x: [8]
layers:
  - {name: fc1, type: Linear, out_features: 3}
  - {name: fc2, type: Linear, out_features: 2, in: x}
"""


@pytest.mark.parametrize("outputs, check_output", [
    ("", lambda out, m, x: torch.testing.assert_close(out, m.fc2(x))),     # default: the last layer
    ("outputs: fc1\n", lambda out, m, x: torch.testing.assert_close(out, m.fc1(x))),
    ("outputs: [fc2, fc1]\n", lambda out, m, x: (
        isinstance(out, tuple) and len(out) == 2 and torch.equal(out[0], m.fc2(x)) and torch.equal(out[1], m.fc1(x)))
     or pytest.fail(repr(out))),
    ("outputs: {score: fc1, other: fc2, raw: x}\n", lambda out, m, x: (
        isinstance(out, dict) and list(out) == ["score", "other", "raw"] and torch.equal(out["score"], m.fc1(x))
        and torch.equal(out["raw"], x)) or pytest.fail(repr(out))),
], ids=["default", "tensor", "tuple", "dict"])
def test_outputs_tensor_tuple_dict(outputs, check_output):
    model = build_model(HEAD + OUTPUTS_BODY + outputs)
    x = torch.randn(5, 8)
    with torch.no_grad():
        out = model(x)
        if not outputs.startswith("outputs: [") and not outputs.startswith("outputs: {"):
            assert isinstance(out, torch.Tensor)
        check_output(out, model, x)


def test_outputs_override_keeps_the_weights():
    declared = build_model(SPECS / "multi_output.yaml")
    assert "return (output1, fc3)" in declared.code
    logits = build_model(SPECS / "multi_output.yaml", outputs={"logits": "fc2", "ink": "fc3"})
    assert "return {'logits': fc2, 'ink': fc3}" in logits.code
    assert "softmax" not in logits.code                                   # nothing computes output1 now
    assert list(logits.state_dict()) == list(declared.state_dict())
    logits.load_state_dict(declared.state_dict())
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        probs, ink = declared(x)
        out = logits(x)
    torch.testing.assert_close(torch.softmax(out["logits"], 1), probs)
    torch.testing.assert_close(out["ink"], ink)
    assert build_model(SPECS / "multi_output.yaml", outputs="features")(x).shape == (2, 128)
    assert [t.shape for t in build_model(SPECS / "multi_output.yaml", outputs=["fc3", "x"])(x)] == [
        (2, 1), (2, 1, 28, 28)]
    with pytest.raises(SpecError, match="no node named 'fc9' to output"):
        build_model(SPECS / "multi_output.yaml", outputs=["fc2", "fc9"])


# --- share, repeat, blocks, Sequential, nested layers ----------------------------------------

def test_share_reuses_one_submodule():
    text = HEAD + """\
inputs:
  a: [6]
  b: [6]
layers:
  - {name: fc, type: Linear, out_features: 6, in: a}
  - {name: again, share: fc, in: b}
  - {name: twice, share: fc, in: again}
  - {name: s, type: add, in: [fc, twice]}
"""
    model = build_model(text)
    assert len(list(model.parameters())) == 2                           # fc.weight, fc.bias only
    assert [name for name, _ in model.named_children()] == ["fc"]
    calls = [n for n in model.graph.nodes if n.op == "call_module"]
    assert [(n.name, n.target) for n in calls] == [("fc", "fc"), ("again", "fc"), ("twice", "fc")]
    assert all(model.get_submodule(n.target) is model.fc for n in calls)
    assert "again = self.fc(b)" in model.code and "twice = self.fc(again)" in model.code
    a, b = torch.randn(3, 6), torch.randn(3, 6)
    with torch.no_grad():
        torch.testing.assert_close(model(a, b), model.fc(a) + model.fc(model.fc(b)))
    model(a, b).sum().backward()                                        # one gradient, from all three calls
    assert model.fc.weight.grad is not None


def test_repeat_makes_fresh_copies_named_like_sequential():
    text = HEAD + """\
inputs:
  x: [10]
layers:
  - {name: hidden, type: Linear, out_features: 16, repeat: 3}
  - {name: act, type: tanh}
"""
    model = build_model(text)
    assert isinstance(model.hidden, nn.Sequential) and len(model.hidden) == 3
    assert [k for k in model.state_dict()] == [f"hidden.{i}.{p}" for i in range(3) for p in ("weight", "bias")]
    assert [tuple(model.hidden[i].weight.shape) for i in range(3)] == [(16, 10), (16, 16), (16, 16)]
    assert not torch.equal(model.hidden[1].weight, model.hidden[2].weight)   # fresh copies, not one
    assert "hidden = self.hidden(x)" in model.code
    x = torch.randn(4, 10)
    with torch.no_grad():
        torch.testing.assert_close(model(x), torch.tanh(model.hidden[2](model.hidden[1](model.hidden[0](x)))))


def test_share_of_a_repeated_layer_calls_every_copy_again():
    text = HEAD + """\
inputs:
  x: [16]
layers:
  - {name: hidden, type: Linear, out_features: 16, repeat: 3}
  - {name: act, type: tanh}
  - {name: again, share: hidden}
"""
    assert check(text).shapes["m"]["again"].output == ("N", 16)
    model = build_model(text)
    x = torch.randn(4, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.hidden(torch.tanh(model.hidden(x))))
    assert len(list(model.parameters())) == 6


def test_block_becomes_a_child_graph_module():
    model = build_model(SPECS / "encoder_decoder.yaml")
    assert isinstance(model.encoder, fx.GraphModule) and isinstance(model.decoder, fx.GraphModule)
    assert type(model.encoder).__name__ == "Encoder"
    assert list(model.state_dict()) == ["encoder.conv1.weight", "encoder.conv1.bias",
                                        "decoder.conv1.weight", "decoder.conv1.bias"]
    assert "conv1 = self.conv1(x)" in model.encoder.code
    assert model.encoder.conv1.in_channels == 1 and model.decoder.conv1.in_channels == 64
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.decoder(model.encoder(x)))
    assert model(x).shape == x.shape


def test_block_used_twice_gets_two_weight_sets():
    text = HEAD + """\
blocks:
  Down:
    layers:
      - {name: conv, type: Conv2d, out_channels: 4, kernel_size: 3, padding: 1}
      - {type: relu}
inputs:
  x: [4, 8, 8]
layers:
  - {name: d1, type: Down}
  - {name: d2, type: Down}
"""
    model = build_model(text)
    assert model.d1 is not model.d2 and model.d1.conv is not model.d2.conv
    assert list(model.state_dict()) == ["d1.conv.weight", "d1.conv.bias", "d2.conv.weight", "d2.conv.bias"]
    assert not torch.equal(model.d1.conv.weight, model.d2.conv.weight)
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.d2(model.d1(x)))


def test_repeated_block_is_a_sequential_of_graph_modules():
    text = HEAD + """\
blocks:
  Res:
    layers:
      - {name: fc, type: Linear, out_features: 8}
      - {name: sum, type: add, in: [x, fc]}
inputs:
  x: [8]
layers:
  - {name: res, type: Res, repeat: 2}
"""
    model = build_model(text)
    assert isinstance(model.res, nn.Sequential) and all(isinstance(m, fx.GraphModule) for m in model.res)
    assert list(model.state_dict()) == ["res.0.fc.weight", "res.0.fc.bias", "res.1.fc.weight", "res.1.fc.bias"]
    x = torch.randn(3, 8)
    with torch.no_grad():
        h = x + model.res[0].fc(x)
        torch.testing.assert_close(model(x), h + model.res[1].fc(h))


def test_sequential_layer_is_an_nn_sequential():
    model = build_model(SPECS / "autoencoder.yaml")
    assert isinstance(model.encoder, nn.Sequential) and not isinstance(model.encoder, fx.GraphModule)
    assert [type(m).__name__ for m in model.encoder] == ["Linear", "ReLU", "Linear", "ReLU"]
    assert "encoder.0.weight" in model.state_dict() and "decoder.2.bias" in model.state_dict()
    assert model.encoder[0].in_features == 784 and model.decoder[0].in_features == 32


def test_nested_transformer_encoder():
    model = build_model(SPECS / "transformer.yaml",
                        overrides={"input_dim": 16, "num_heads": 2, "num_layers": 3, "seq_len": 5}).eval()
    encoder = model.transformer
    assert isinstance(encoder, nn.TransformerEncoder) and len(encoder.layers) == 3
    assert all(isinstance(layer, nn.TransformerEncoderLayer) for layer in encoder.layers)
    assert encoder.layers[0].self_attn.embed_dim == 16 and encoder.layers[0].self_attn.num_heads == 2
    assert encoder.layers[0].self_attn.batch_first
    assert encoder.layers[0] is not encoder.layers[1]
    assert "transformer.layers.2.linear1.weight" in model.state_dict()
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), torch.relu(model.fc(encoder(x).mean(1))))


def test_weight_norm_has_weight_g_and_v_and_prints_no_warning(capfd):
    with warnings.catch_warnings(record=True) as direct:      # the warning specbuild must silence
        warnings.simplefilter("always")
        torch.nn.utils.weight_norm(nn.Linear(2, 2))
    torch_warns = any(issubclass(w.category, FutureWarning) for w in direct)
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = build_model(SPECS / "weight_norm.yaml")
    assert [str(w.message) for w in caught if issubclass(w.category, FutureWarning)] == []
    out, err = capfd.readouterr()
    assert "FutureWarning" not in out + err and "deprecated" not in out + err
    fc1 = dict(model.fc1.named_parameters())
    assert set(fc1) == {"weight_g", "weight_v", "bias"}
    assert tuple(fc1["weight_g"].shape) == (64, 1) and tuple(fc1["weight_v"].shape) == (64, 784)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        v, g = model.fc1.weight_v, model.fc1.weight_g
        hidden = torch.relu(x.flatten(1) @ (g * v / v.norm(dim=1, keepdim=True)).T + model.fc1.bias)
        torch.testing.assert_close(model(x), torch.softmax(model.fc2(hidden), 1))
    if not torch_warns:
        pytest.skip("this torch no longer warns for weight_norm, so silencing it was not exercised")


# --- networks -------------------------------------------------------------------------------

def test_several_networks_need_network():
    with pytest.raises(SpecError) as caught:
        build_model(SPECS / "gan.yaml")
    assert "several networks (generator, discriminator)" in caught.value.message
    assert "network='generator'" in caught.value.hint
    with pytest.raises(SpecError) as caught:
        build_model(SPECS / "gan.yaml", network="generatr")
    assert "no network 'generatr'" in caught.value.message
    assert caught.value.hint == "did you mean 'generator'?"
    with pytest.raises(SpecError) as caught:
        build_model(SPECS / "gan.yaml", network="critic")
    assert "it has: generator, discriminator" in caught.value.hint

    generator = build_model(SPECS / "gan.yaml", network="generator")
    assert generator(torch.randn(2, 100)).shape == (2, 784)
    models = build_models(SPECS / "gan.yaml")
    assert list(models) == ["generator", "discriminator"]
    assert models["discriminator"](models["generator"](torch.randn(2, 100))).shape == (2, 1)
    assert type(models["generator"]).__name__ == "Generator"


# --- user types ------------------------------------------------------------------------------

class Scale(nn.Module):
    def __init__(self, factor: float = 2.0):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


class Expand(nn.Module):
    """Owns weights and changes the shape: [N, F] -> [N, 1, width]."""
    def __init__(self, in_features: int, width: int = 4):
        super().__init__()
        self.proj = nn.Linear(in_features, width)

    def forward(self, x):
        return self.proj(x).unsqueeze(1)


USER_SPEC = HEAD + """\
inputs:
  x: [3]
layers:
  - {name: scale, type: Scale, factor: 3.0}
  - {name: expand, type: Expand, in_features: 3, width: 5}
  - {name: flat, type: flatten}
  - {name: fc, type: Linear, out_features: 2}
"""


def test_user_types_stand_inside_sequential(user_types):
    """With or without a shape rule (issue 9: they failed there with 'no shape rule')."""
    for name, shape in (("ScaleByMeta", None), ("ScaleByRule", lambda args, inputs: inputs[0])):
        user_types(name, Scale, shape=shape)
        model = build_model(HEAD + "inputs: {x: [4]}\nlayers:\n  - name: seq\n    type: Sequential\n"
                            f"    layers: [{{type: Linear, out_features: 3}}, {{type: {name}, factor: 3.0}}]\n")
        x = torch.randn(2, 4)
        torch.testing.assert_close(model(x), model.seq[0](x) * 3.0)
        assert isinstance(model.seq[1], Scale)


@pytest.fixture
def user_types():
    registered = []

    def register(name, factory, **kwargs):
        specbuild.register_layer(name, factory, **kwargs)
        registered.append(name)

    yield register
    for name in registered:
        specbuild.unregister_layer(name)
    for name in registered:                       # and the specs know them no more
        with pytest.raises(SpecError, match=f"unknown layer type '{name}'"):
            check(HEAD + f"inputs:\n  x: [3]\nlayers:\n  - {{type: {name}}}\n")


@pytest.mark.parametrize("with_rule", [False, True], ids=["meta-fallback", "shape-rule"])
def test_registered_user_type_builds(with_rule, user_types):
    user_types("Scale", Scale, **({"shape": lambda args, inputs: inputs[0]} if with_rule else {}))
    user_types("Expand", Expand, **({"shape": lambda args, inputs: (inputs[0][0], 1, args["width"])}
                                     if with_rule else {}))
    shapes = check(USER_SPEC).shapes["m"]
    assert shapes["scale"].output == ("N", 3) and shapes["scale"].params == 0
    assert shapes["expand"].output == ("N", 1, 5) and shapes["expand"].params == 3 * 5 + 5
    assert shapes["fc"].args["in_features"] == 5
    model = build_model(USER_SPEC)
    assert isinstance(model.scale, Scale) and model.scale.factor == 3.0
    assert isinstance(model.expand, Expand) and "expand.proj.weight" in model.state_dict()
    assert "scale = self.scale(x)" in model.code
    x = torch.randn(4, 3)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.fc(model.expand.proj(3.0 * x)))


def test_user_type_arguments_are_validated(user_types):
    user_types("Scale", Scale)
    with pytest.raises(SpecError) as caught:
        check(HEAD + "inputs:\n  x: [3]\nlayers:\n  - {type: Scale, factr: 2}\n")
    assert "unknown argument 'factr' for Scale" in caught.value.message
    assert "did you mean 'factor'" in caught.value.hint


# --- what build_model accepts ----------------------------------------------------------------

def test_build_model_accepts_path_yaml_json_and_dict():
    path = SPECS / "multi_input.yaml"
    text = path.read_text()
    data = specbuild.load_spec(path).data      # not yaml.safe_load: YAML 1.1 reads `on:` as True
    sources = {"Path": path, "str path": str(path), "YAML text": text, "JSON text": json.dumps(data, indent=1),
               "dict": data, "Checked": check(path)}
    reference = None
    for kind, source in sources.items():
        torch.manual_seed(0)
        model = build_model(source)
        state = {k: v.shape for k, v in model.state_dict().items()}
        if reference is None:
            reference = (state, model.code, model.state_dict())
        assert state == reference[0], kind
        assert model.code == reference[1], kind
        for key, value in model.state_dict().items():       # same seed, same layer order: same weights
            assert torch.equal(value, reference[2][key]), (kind, key)
    assert data == specbuild.load_spec(text).data             # the caller's dict is not modified


def test_overrides_and_errors_from_text_sources():
    model = build_model(SPECS / "lstm.yaml", overrides={"hidden_size": 7, "seq_len": 4})
    assert model.lstm.hidden_size == 7 and model(torch.randn(2, 4, 1)).shape == (2, 1)
    with pytest.raises(SpecError) as caught:
        build_model(HEAD + "inputs:\n  x: [3]\nlayers:\n  - {type: Linear, in_features: 4, out_features: 2}\n")
    assert caught.value.file is None and caught.value.line == 6
    assert "in_features is 4 but its input has 3 features" in str(caught.value)


def test_model_builds_and_runs_on_the_meta_device():
    with torch.device("meta"):
        model = build_model(SPECS / "cnn.yaml")
        assert model.fc1.weight.device.type == "meta"
        out = model(torch.empty(5, 1, 28, 28))
    assert out.device.type == "meta" and tuple(out.shape) == (5, 10)
