"""The compiler dispatches on the registry's `call` of a type, once: every registered tensor
function builds, runs and matches both its inferred shape and torch's own function; every call
kind has exactly one emitter or builder; user types go through the same dispatch; and
compile.py holds no case on a type's name, so that ladder cannot come back."""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import specbuild
from specbuild import registry
from specbuild.compiler import compile as compiler
from specbuild.shapes import core as shapes_core
from specbuild.spec.validate import check

BATCH = 2
FUNCTION_TYPES = sorted(name for name, entry in registry.layer_types().items() if entry.kind == "function")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@dataclass
class Case:
    inputs: list                     # input shapes without the batch dim, one per `in:`
    args: dict                       # the spec's arguments
    torch_call: Callable             # torch's own function on the input tensors: the oracle
    before: dict | None = None       # a layer in front (item picks from chunk's several values)
    masks: tuple = ()                # the inputs that are bool (masked_fill's mask, where's condition)


CASES = {
    "relu": Case([(3, 4)], {}, torch.relu),
    "sigmoid": Case([(3, 4)], {}, torch.sigmoid),
    "tanh": Case([(3, 4)], {}, torch.tanh),
    "exp": Case([(3, 4)], {}, torch.exp),
    "log": Case([(3, 4)], {}, torch.log),
    "abs": Case([(3, 4)], {}, torch.abs),
    "silu": Case([(3, 4)], {}, F.silu),
    "softplus": Case([(3, 4)], {"beta": 2.0}, lambda x: F.softplus(x, beta=2.0)),
    "elu": Case([(3, 4)], {"alpha": 0.5}, lambda x: F.elu(x, alpha=0.5)),
    "leaky_relu": Case([(3, 4)], {"negative_slope": 0.2}, lambda x: F.leaky_relu(x, 0.2)),
    "gelu": Case([(3, 4)], {"approximate": "tanh"}, lambda x: F.gelu(x, approximate="tanh")),
    "softmax": Case([(3, 4)], {"dim": 1}, lambda x: torch.softmax(x, 1)),
    "log_softmax": Case([(3, 4)], {"dim": -1}, lambda x: torch.log_softmax(x, -1)),
    "clamp": Case([(3, 4)], {"min": 0.7, "max": 1.2}, lambda x: torch.clamp(x, 0.7, 1.2)),
    "flatten": Case([(3, 4)], {}, lambda x: torch.flatten(x, 1)),        # keeps the batch, not torch's 0
    "reshape": Case([(3, 4)], {"shape": [-1, 12]}, lambda x: torch.reshape(x, (-1, 12))),
    "view": Case([(3, 4)], {"shape": [-1, 4, 3]}, lambda x: x.view(-1, 4, 3)),
    "permute": Case([(3, 4)], {"dims": [0, 2, 1]}, lambda x: torch.permute(x, (0, 2, 1))),
    "transpose": Case([(3, 4)], {"dim0": 1, "dim1": 2}, lambda x: torch.transpose(x, 1, 2)),
    "unsqueeze": Case([(3, 4)], {"dim": 1}, lambda x: torch.unsqueeze(x, 1)),
    "squeeze": Case([(1, 4)], {"dim": 1}, lambda x: torch.squeeze(x, 1)),
    "mean": Case([(3, 4)], {"dim": 1}, lambda x: torch.mean(x, 1)),
    "sum": Case([(3, 4)], {"dim": [1, 2]}, lambda x: torch.sum(x, (1, 2))),
    "amax": Case([(3, 4)], {"dim": 2, "keepdim": True}, lambda x: torch.amax(x, 2, keepdim=True)),
    "amin": Case([(3, 4)], {"dim": -1}, lambda x: torch.amin(x, -1)),
    "chunk": Case([(4, 3)], {"chunks": 2, "dim": 1}, lambda x: torch.chunk(x, 2, 1)),
    "item": Case([(4, 3)], {"index": 1}, lambda x: torch.chunk(x, 2, 1)[1],
                 before={"type": "chunk", "chunks": 2, "dim": 1}),
    "slice": Case([(3, 4)], {"at": "[:, -1, 1:]"}, lambda x: x[:, -1, 1:]),
    "cat": Case([(3, 4), (2, 4)], {"dim": 1}, lambda a, b: torch.cat([a, b], 1)),
    "stack": Case([(3, 4), (3, 4)], {}, lambda a, b: torch.stack([a, b])),         # dim 0
    "add": Case([(3, 4), (3, 4), (1, 4)], {}, lambda a, b, c: a + b + c),
    "mul": Case([(3, 4), (3, 4), (3, 1)], {}, lambda a, b, c: a * b * c),
    "sub": Case([(3, 4), (3, 4)], {}, torch.sub),
    "div": Case([(3, 4), (3, 4)], {}, torch.div),
    "matmul": Case([(3, 4), (4, 5)], {}, torch.matmul),
    "split": Case([(6, 4)], {"split_size_or_sections": [2, 4], "dim": 1}, lambda x: torch.split(x, [2, 4], 1)),
    "unflatten": Case([(3, 8)], {"dim": 2, "sizes": [2, -1]}, lambda x: torch.unflatten(x, 2, (2, 4))),
    "expand": Case([(1, 4)], {"size": [-1, 3, 4]}, lambda x: x.expand(-1, 3, 4)),
    "repeat_interleave": Case([(3, 4)], {"repeats": 2, "dim": 1}, lambda x: torch.repeat_interleave(x, 2, 1)),
    "tril": Case([(4, 4)], {"diagonal": -1}, lambda x: torch.tril(x, -1)),
    "triu": Case([(4, 4)], {}, torch.triu),
    "masked_fill": Case([(3, 4), (1, 4)], {"value": -1.5}, lambda x, m: x.masked_fill(m, -1.5), masks=(1,)),
    "where": Case([(3, 4), (3, 4), (1, 4)], {}, torch.where, masks=(0,)),
    "scaled_dot_product_attention": Case([(2, 5, 8), (2, 6, 8), (2, 6, 3)], {"is_causal": True, "scale": 0.5},
                                         lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                                                        scale=0.5)),
    "arange": Case([(5, 3)], {"dim": 1}, lambda x: torch.arange(5)),
    "constant": Case([(3,)], {"value": [[1, 0], [0, 1]], "dtype": "float32"},
                     lambda x: torch.tensor([[1.0, 0.0], [0.0, 1.0]])),
}


def _spec(type_name: str, case: Case) -> dict:
    names = [f"x{i}" for i in range(len(case.inputs))]
    layers = [{"name": "first", "in": names, **case.before}] if case.before else []
    layers.append({"name": "out", "type": type_name, "in": ["first"] if case.before else names, **case.args})
    inputs = {n: {"shape": list(s), "dtype": "bool"} if i in case.masks else list(s)
              for i, (n, s) in enumerate(zip(names, case.inputs))}
    return {"specbuild": 1, "name": "m", "inputs": inputs,
            "layers": layers, "outputs": "out"}


def _concrete(shape):
    """An inferred shape with the batch symbol replaced: ("N", 4) -> (2, 4); lists for several values."""
    if isinstance(shape, list):
        return [_concrete(s) for s in shape]
    return tuple(BATCH if d == "N" else d for d in shape)


def _shapes(value):
    return [_shapes(v) for v in value] if isinstance(value, (tuple, list)) else tuple(value.shape)


@pytest.mark.parametrize("type_name", FUNCTION_TYPES)
def test_every_registered_function_compiles_runs_and_matches_torch(type_name, monkeypatch):
    assert type_name in CASES, (f"{type_name} is a registered tensor function with no case here: "
                                "add its input shapes, arguments and torch call to CASES")
    case = CASES[type_name]
    entry = registry.lookup(type_name)
    emitted = []
    emitter = compiler._EMITTERS[entry.call]
    monkeypatch.setitem(compiler._EMITTERS, entry.call, lambda *a: emitted.append(a[2]) or emitter(*a))
    spec = _spec(type_name, case)
    model = specbuild.build_model(spec)
    assert "out" in emitted                                  # built through the call kind's emitter
    assert not list(model.parameters())                      # a tensor function owns no weights
    inputs = [torch.rand(BATCH, *shape) + 0.5 for shape in case.inputs]    # > 0: log and div are defined
    inputs = [x > 1 if i in case.masks else x for i, x in enumerate(inputs)]
    with torch.no_grad():
        got = model(*inputs)
    inferred = check(spec).shapes["m"]["out"].output
    assert _shapes(got) == _concrete(inferred), (type_name, model.code)
    expected = case.torch_call(*inputs)
    if isinstance(expected, tuple):
        assert isinstance(got, tuple) and len(got) == len(expected)
        for g, e in zip(got, expected):
            torch.testing.assert_close(g, e)
    else:
        torch.testing.assert_close(got, expected)


def test_cases_name_only_registered_functions():
    assert sorted(CASES) == FUNCTION_TYPES


# --- one emitter or builder per call kind ---------------------------------------------------

def test_every_call_kind_has_exactly_one_emitter_or_builder():
    emitters, builders = set(compiler._EMITTERS), set(compiler._BUILDERS)
    assert not emitters & builders
    assert emitters | builders == set(registry.CALLS)
    assert set(compiler._PARSERS) == set(registry.PARSES)


@pytest.mark.parametrize("name", sorted(registry.BUILTIN_TYPES))
def test_every_type_says_how_it_is_called(name):
    entry = registry.BUILTIN_TYPES[name]
    assert entry.call in (compiler._BUILDERS if entry.makes_module else compiler._EMITTERS)
    assert entry.operand is None or entry.operand in entry.args
    assert entry.parse is None or entry.operand is not None
    assert all("default" in entry.args[arg] for arg in entry.explicit)


def test_a_type_with_an_unknown_call_is_refused():
    with pytest.raises(ValueError, match="unknown call"):
        registry.LayerType("odd", "function", "torch.relu", {}, call="teleport")


def test_a_new_function_needs_only_a_registry_entry_and_a_shape_rule(monkeypatch):
    monkeypatch.setitem(registry.BUILTIN_TYPES, "neg", registry.LayerType("neg", "function", "torch.neg", {},
                                                                          call="function"))
    monkeypatch.setitem(shapes_core.RULES, "neg", (lambda a, inputs: (inputs[0], {}), {}))
    model = specbuild.build_model({"specbuild": 1, "name": "m", "inputs": {"x": [3]},
                                   "layers": [{"name": "y", "type": "neg"}]})
    assert "y = torch.neg(x)" in model.code
    x = torch.randn(BATCH, 3)
    torch.testing.assert_close(model(x), -x)


# --- user types --------------------------------------------------------------------------------

class Shift(nn.Module):
    def __init__(self, by: float = 1.0):
        super().__init__()
        self.by = by

    def forward(self, x):
        return x + self.by


def test_a_registered_user_type_compiles_through_the_dispatch(monkeypatch):
    entry = specbuild.register_layer("Shift", Shift, shape=lambda args, inputs: inputs[0])
    try:
        assert entry.call == "user" and entry.makes_module
        built = []
        builder = compiler._BUILDERS["user"]
        monkeypatch.setitem(compiler._BUILDERS, "user", lambda e, args: built.append(e.name) or builder(e, args))
        model = specbuild.build_model({"specbuild": 1, "name": "m", "inputs": {"x": [3]},
                                       "layers": [{"name": "shift", "type": "Shift", "by": 2.0},
                                                  {"name": "fc", "type": "Linear", "out_features": 2}]})
        assert built == ["Shift"]
        assert isinstance(model.shift, Shift) and model.shift.by == 2.0
        assert "shift = self.shift(x)" in model.code
        x = torch.randn(BATCH, 3)
        with torch.no_grad():
            torch.testing.assert_close(model(x), model.fc(x + 2.0))
    finally:
        specbuild.unregister_layer("Shift")


# --- no ladder on type names in the compiler ----------------------------------------------

COMPILE_PY = Path(compiler.__file__)


def test_compile_compares_no_type_name_with_a_literal():
    source = COMPILE_PY.read_text()
    compared = re.compile(r"""\b(type\w*|target|name)\s*(==|!=)\s*["']""")
    member = re.compile(r"""\b(type\w*|target|name)\s+(not\s+)?in\s*[(\[{]\s*["']""")
    literal_first = re.compile(r"""["']\s*(==|!=)\s*\w*\.?(type\w*|target)\b""")
    for pattern in (compared, member, literal_first):
        assert not pattern.search(source), pattern.search(source).group(0)


def test_compile_names_no_registered_type():
    """No string in compile.py (docstrings aside) is a type's name or target: the registry says it all."""
    tree = ast.parse(COMPILE_PY.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    strings = {node.value for node in ast.walk(tree)
               if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings}
    names = {entry.name for entry in registry.BUILTIN_TYPES.values()} | {
        entry.target for entry in registry.BUILTIN_TYPES.values()}
    assert not strings & names
