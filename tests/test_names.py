"""The naming rule (spec/graph.py): what `validate` accepts as a name, `build_model` can build.

Every name a spec gives is no Python keyword; a layer's name is no attribute a built model
(a torch.fx.GraphModule) already has, since the layer becomes its submodule; an input's name is
not `self` and hides no global of the generated forward (Python's builtins, torch.fx's `torch`,
`inf`...), since the input becomes a parameter of that forward.  Each refusal names the node, its
line and a free name.  The second half shows that what is refused really breaks: with the rule
switched off, torch fails on each refused name, and the allowed look-alikes build and run.
"""
from __future__ import annotations

import builtins
import keyword

import pytest

import specbuild
from specbuild import registry
from specbuild.spec import graph

from refusals import assert_refused, parametrize

torch = pytest.importorskip("torch")

LAYER_TAKEN = "every built model (a torch.fx.GraphModule) already has an attribute of that name"
KEYWORD = "it is a Python keyword"


def layer_spec(name: str, type_line: str = "type: Linear, out_features: 3") -> str:
    return f"specbuild: 1\nname: m\ninputs: {{x: [4]}}\nlayers:\n  - {{name: {name}, {type_line}}}\n"


# (case id, spec text, the first line of the error after "FILE:")
CASES = [
    ("layer-to", layer_spec("to"),
     f"5:6: layers[0].name (to): 'to' cannot name a layer: {LAYER_TAKEN} — rename it, e.g. 'to_'"),
    ("layer-class", layer_spec("class"),
     f"5:6: layers[0].name (class): 'class' cannot name a layer: {KEYWORD} — rename it, e.g. 'class_'"),
    ("layer-None", layer_spec("None"),
     f"5:6: layers[0].name (None): 'None' cannot name a layer: {KEYWORD} — rename it, e.g. 'None_'"),
    ("layer-training", layer_spec("training"),
     f"5:6: layers[0].name (training): 'training' cannot name a layer: {LAYER_TAKEN} — rename it, e.g. 'training_'"),
    ("function-layer-eval", layer_spec("eval", "type: relu"),       # one rule, whatever the layer's type
     f"5:6: layers[0].name (eval): 'eval' cannot name a layer: {LAYER_TAKEN} — rename it, e.g. 'eval_'"),
    ("layer-requires_grad_", layer_spec("requires_grad_"),         # the hint is itself free
     f"5:6: layers[0].name (requires_grad_): 'requires_grad_' cannot name a layer: {LAYER_TAKEN} "
     "— rename it, e.g. 'requires_grad__'"),
    ("input-self", "specbuild: 1\nname: m\ninputs:\n  self: [4]\nlayers:\n  - {type: relu}\n",
     "4:3: inputs.self: 'self' cannot name an input: the generated forward(self, ...) has its own `self` "
     "— rename it, e.g. 'self_'"),
    ("layer-self", layer_spec("self", "type: relu"),
     "5:6: layers[0].name (self): 'self' cannot name a layer: the generated forward(self, ...) has its own `self` "
     "— rename it, e.g. 'self_'"),
    ("input-torch", "specbuild: 1\nname: m\ninputs:\n  torch: [4]\nlayers:\n  - {type: relu}\n",
     "4:3: inputs.torch: 'torch' cannot name an input: as a parameter of the generated forward it would hide "
     "the global 'torch', which that code may use — rename it, e.g. 'torch_'"),
    ("input-slice", "specbuild: 1\nname: m\ninputs:\n  slice: [4]\nlayers:\n  - {type: relu}\n",
     "4:3: inputs.slice: 'slice' cannot name an input: as a parameter of the generated forward it would hide "
     "Python's builtin 'slice', which that code may use — rename it, e.g. 'slice_'"),
    ("input-lambda", "specbuild: 1\nname: m\ninputs:\n  lambda: [4]\nlayers:\n  - {type: relu}\n",
     f"4:3: inputs.lambda: 'lambda' cannot name an input: {KEYWORD} — rename it, e.g. 'lambda_'"),
    ("block-input-self", "specbuild: 1\nname: m\ninputs: {x: [4]}\nblocks:\n  twice:\n    inputs: [self]\n"
     "    layers:\n      - {type: relu}\nlayers:\n  - {type: twice}\n",
     "6:14: blocks.twice.inputs[0]: 'self' cannot name an input: the generated forward(self, ...) has its own "
     "`self` — rename it, e.g. 'self_'"),
    ("block-layer-graph", "specbuild: 1\nname: m\ninputs: {x: [4]}\nblocks:\n  twice:\n    layers:\n"
     "      - {name: graph, type: ReLU}\nlayers:\n  - {type: twice}\n",
     f"7:10: blocks.twice.layers[0].name (graph): 'graph' cannot name a layer: {LAYER_TAKEN} "
     "— rename it, e.g. 'graph_'"),
    ("output-key-return", "specbuild: 1\nname: m\ninputs: {x: [4]}\nlayers:\n  - {name: a, type: relu}\n"
     "outputs: {return: a}\n",
     f"6:11: outputs.return: 'return' cannot name an output: {KEYWORD} — rename it, e.g. 'return_'"),
    ("block-def", "specbuild: 1\nname: m\ninputs: {x: [4]}\nblocks:\n  def:\n    layers:\n      - {type: relu}\n"
     "layers:\n  - {type: relu}\n",
     f"5:3: blocks.def: 'def' cannot name a block: {KEYWORD} — rename it, e.g. 'def_'"),
    ("network-class", "specbuild: 1\nname: m\nnetworks:\n  class:\n    inputs: {x: [4]}\n    layers:\n"
     "      - {type: relu}\n",
     f"4:3: networks.class: 'class' cannot name a network: {KEYWORD} — rename it, e.g. 'class_'"),
    ("spec-name-import", "specbuild: 1\nname: import\ninputs: {x: [4]}\nlayers:\n  - {type: relu}\n",
     f"2:1: name: 'import' cannot name a spec: {KEYWORD} — rename it, e.g. 'import_'"),
]


@parametrize(CASES)
def test_refused_name(text, first, cli, write_spec):
    assert_refused(text, first, cli, write_spec)


def test_every_wrong_name_is_reported_at_once(write_spec, cli):
    text = ("specbuild: 1\nname: m\ninputs:\n  self: [4]\n  y: [4]\nlayers:\n"
            "  - {name: to, type: Linear, in: self, out_features: 4}\n  - {name: s, type: add, in: [to, y]}\n")
    result = cli("validate", write_spec(text))
    lines = result.err.splitlines()
    assert [line.split(": ")[1] for line in lines[:-1]] == ["inputs.self", "layers[0].name (to)"]
    assert lines[-1] == "2 problems found"


# --- what the rule lets through builds and runs ------------------------------------------------

ALLOWED_LAYER_NAMES = ["match", "case", "_", "self_", "input", "x_to", "to_", "forward_", "Eval", "requires_grad"]
ALLOWED_INPUT_NAMES = ["match", "case", "_", "x", "self_", "torch_", "images", "Input"]


def _forward(spec: dict):
    model = specbuild.build_model(spec)
    return model(*[torch.ones(2, 4) for _ in spec["inputs"]])


@pytest.mark.parametrize("name", ALLOWED_LAYER_NAMES)
def test_allowed_layer_names_build_and_run(name):
    spec = {"specbuild": 1, "name": "m", "inputs": {"x": [4]},
            "layers": [{"name": name, "type": "Linear", "out_features": 3},
                       {"type": "cat", "in": [name, name], "dim": 1}]}
    assert specbuild.validate(spec) == []
    assert _forward(spec).shape == (2, 6)
    assert f"{name}.weight" in specbuild.build_model(spec).state_dict()     # the name the user chose


@pytest.mark.parametrize("name", ALLOWED_INPUT_NAMES)
def test_allowed_input_names_build_and_run(name):
    spec = {"specbuild": 1, "name": "m", "inputs": {name: [4], "other": [4]},
            "layers": [{"type": "cat", "in": [name, "other"], "dim": 1}, {"type": "slice", "at": "[..., :5]"}]}
    assert specbuild.validate(spec) == []
    assert _forward(spec).shape == (2, 5)


# --- what the rule refuses really breaks --------------------------------------------------------

@pytest.fixture
def rule_off(monkeypatch):
    """Validation without the naming rule: what torch does with the names it refuses."""
    monkeypatch.setattr(graph, "_name_taken", lambda name, role: None)


def test_module_attributes_are_read_from_torch():
    gm = torch.fx.GraphModule(torch.nn.Module(), torch.fx.Graph())
    # a torch.compile earlier in the process adds ___ bookkeeping names to every module (not ours)
    assert {name for name in dir(gm) if not name.startswith("___")} <= registry.MODULE_ATTRIBUTES
    assert {"to", "float", "cuda", "type", "eval", "forward", "training", "state_dict", "graph", "code",
            "meta"} <= registry.MODULE_ATTRIBUTES


@pytest.mark.parametrize("name", sorted(registry.MODULE_ATTRIBUTES | set(keyword.kwlist) | {"self"}))
def test_every_refused_layer_name_breaks_torch(name, rule_off):
    spec = {"specbuild": 1, "name": "m", "inputs": {"x": [4]},
            "layers": [{"name": name, "type": "Linear", "out_features": 3}, {"name": "after", "type": "ReLU"}]}
    with pytest.raises((KeyError, TypeError, RuntimeError, AttributeError, SyntaxError)):
        _forward(spec)


@pytest.mark.parametrize("name", keyword.kwlist)
def test_every_keyword_input_breaks_torch(name, rule_off):
    with pytest.raises(SyntaxError):
        _forward({"specbuild": 1, "name": "m", "inputs": {name: [4]}, "layers": [{"type": "relu"}]})


@pytest.mark.parametrize("name, layer, error", [
    ("self", {"type": "relu"}, "takes 1 positional argument but 2 were given"),
    ("torch", {"type": "cat", "in": ["torch", "torch"], "dim": 1}, "'Tensor' object has no attribute 'cat'"),
    ("slice", {"type": "slice", "at": "[:, :2]"}, "'Tensor' object is not callable"),
    ("Ellipsis", {"type": "slice", "at": "[..., 0]"}, "tensors used as indices must be long"),
])
def test_inputs_hiding_a_name_of_the_forward_break_it(name, layer, error, rule_off):
    with pytest.raises((TypeError, AttributeError, IndexError), match=error):
        _forward({"specbuild": 1, "name": "m", "inputs": {name: [4]}, "layers": [layer]})


def test_the_globals_an_input_may_not_hide_are_torch_fxs_own():
    """fx renames a node that would shadow one of these; an input (a parameter of forward) it cannot."""
    reserved = set(torch.fx.graph._illegal_names)
    assert registry.FORWARD_GLOBALS - {"self"} <= reserved | set(dir(builtins))
    assert {"torch", "inf", "nan", "device"} <= registry.FORWARD_GLOBALS
    assert reserved - set(keyword.kwlist) <= registry.FORWARD_GLOBALS


def test_soft_keywords_are_ordinary_names():
    """match, case, _ (and 3.12's type) are identifiers to Python: refused only where taken otherwise."""
    for name in keyword.softkwlist:
        if name in registry.MODULE_ATTRIBUTES:        # `type`: nn.Module.type, and a builtin
            assert graph._name_taken(name, "layer") == LAYER_TAKEN
            continue
        assert graph._name_taken(name, "layer") is None and graph._name_taken(name, "input") is None
        assert name in ALLOWED_LAYER_NAMES and name in ALLOWED_INPUT_NAMES    # built and run above
