"""Dtypes: every type's dtype rule against torch, and dtype mismatches reported at their line.

The oracle takes the shape oracle's cases (tests/test_shape_rules_vs_torch.py) of every rule
type and runs each with every input dtype a spec can declare, one input at a time, through
the rule (`infer(..., dtypes)`) and through torch on the CPU.  The meta device is no oracle
here: it skips the kernels' dtype checks (softmax of int64 "runs" on meta, not on the CPU).
Where torch runs, the rule must give torch's output dtype(s); where torch refuses, the rule
must refuse; the rule may refuse more only where STRICTER says so.
"""
from __future__ import annotations

import random
import warnings

import pytest

torch = pytest.importorskip("torch")

import specbuild  # noqa: E402
from specbuild import SpecError  # noqa: E402
from specbuild.shapes.core import RULES, DtypeError, ShapeError, infer  # noqa: E402
from specbuild.shapes.dtypes import DTYPE_RULES, promote, result_type  # noqa: E402
from test_shape_rules_vs_torch import BOOL, CASES, EVAL, LONG, OPS, _sub, build_module  # noqa: E402

DTYPES = ["float32", "float64", "float16", "bfloat16", "int64", "int32", "bool"]
PER_TYPE = 3            # accepted shape cases per type, each run with every dtype at every input
# types whose dtype rule depends on their arguments (weights or not, indices or not): more cases
ARGUMENT_DEPENDENT = ("BatchNorm", "InstanceNorm", "GroupNorm", "LayerNorm", "SyncBatchNorm", "MaxPool1d",
                      "AdaptiveMaxPool", "FractionalMaxPool", "clamp", "LPPool")
# (type, input dtype) torch runs but the rule refuses, on purpose: kernels that exist for some
# ranks only (LocalResponseNorm of a 4-d float16), and bool indices EmbeddingBag happens to take.
STRICTER = {("LocalResponseNorm", d) for d in ("float16", "bfloat16", "int64")} | {("EmbeddingBag", "bool")}


def default_dtypes(type_name, inputs):
    return ["int64" if i in LONG.get(type_name, ()) else "bool" if i in BOOL.get(type_name, ()) else "float32"
            for i in range(len(inputs))]


def _tensor(value, dtype, n):
    if isinstance(value, list):
        return tuple(_tensor(v, dtype, n) for v in value)
    size = [n if d == "N" else d for d in value]
    t = getattr(torch, dtype)
    return torch.rand(size).to(t) if t.is_floating_point else torch.zeros(size, dtype=t)


def torch_dtype(type_name, args, inputs, dtypes):
    """The output's dtype(s) as torch names, or the exception torch raised (CPU, batch 2)."""
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            xs = [_tensor(x, d, 2) for x, d in zip(inputs, dtypes)]
            if type_name in OPS:
                out = OPS[type_name](xs, **_sub(args, 2))
            else:
                module = build_module(type_name, args)
                if type_name in EVAL:
                    module.eval()
                if type_name == "MultiheadAttention" and len(xs) < 3:
                    xs = (xs + xs[-1:] * 2)[:3]
                out = module(*xs)
    except Exception as e:   # torch raises many kinds
        return e

    def name(o):
        return str(o.dtype).removeprefix("torch.") if isinstance(o, torch.Tensor) else [name(v) for v in o]
    return name(out)


def rule_dtype(type_name, args, inputs, dtypes):
    try:
        return infer(type_name, args, inputs, dtypes).dtype
    except DtypeError as e:
        return e


# Types whose shape-oracle cases torch all refuses (GRU's there all pass `nonlinearity`)
MORE = {"GRU": [({"hidden_size": 3}, [("N", 5, 4)]), ({"hidden_size": 3, "num_layers": 2}, [(5, "N", 4), (2, "N", 3)])]}


def accepted_cases(type_name):
    """Up to PER_TYPE cases whose shapes the rule and torch accept, spread over the list."""
    cases = list(CASES[type_name])
    random.Random(type_name).shuffle(cases)
    cases = MORE.get(type_name, []) + cases
    out = []
    for args, inputs in cases:
        try:
            got = infer(type_name, args, inputs)
        except ShapeError:
            continue
        if not isinstance(torch_dtype(type_name, got.args, inputs, default_dtypes(type_name, inputs)), Exception):
            out.append((got.args, inputs))
        if len(out) == (10 if type_name.startswith(ARGUMENT_DEPENDENT) else PER_TYPE):
            break
    return out


def compare(type_name, args, inputs, dtypes):
    theirs = torch_dtype(type_name, args, inputs, dtypes)
    ours = rule_dtype(type_name, args, inputs, dtypes)
    if isinstance(ours, Exception) and isinstance(theirs, Exception):
        return None
    if isinstance(ours, Exception):
        changed = {d for d, base in zip(dtypes, default_dtypes(type_name, inputs)) if d != base}
        if any((type_name, d) in STRICTER for d in changed):
            return None
        return f"rule refuses ({ours}) but torch gives {theirs}"
    if isinstance(theirs, Exception):
        return f"torch refuses ({type(theirs).__name__}: {str(theirs)[:120]}) but the rule gives {ours}"
    return None if ours == theirs else f"rule gives {ours}, torch {theirs}"


@pytest.mark.parametrize("type_name", sorted(CASES))
def test_dtype_rule_matches_torch(type_name):
    cases = accepted_cases(type_name)
    assert cases, f"no case of {type_name} that torch runs"
    problems = []
    for args, inputs in cases:
        base = default_dtypes(type_name, inputs)
        for i in range(len(inputs)):
            for d in DTYPES:
                dtypes = base[:i] + [d] + base[i + 1:]
                diff = compare(type_name, args, inputs, dtypes)
                if diff:
                    problems.append(f"{type_name}({args}) on {inputs} of {dtypes}: {diff}")
    assert not problems, f"{len(problems)} differ:\n" + "\n".join(problems[:12])


def test_every_rule_has_a_dtype_rule():
    assert set(DTYPE_RULES) == set(RULES)


@pytest.mark.parametrize("x", DTYPES)
@pytest.mark.parametrize("y", DTYPES)
def test_promotion_is_torchs(x, y):
    tx, ty = getattr(torch, x), getattr(torch, y)
    assert promote(x, y) == str(torch.promote_types(tx, ty)).removeprefix("torch.")
    for shapes in [((2,), ()), ((), (2,)), ((), ())]:
        a, b = torch.zeros(shapes[0], dtype=tx), torch.zeros(shapes[1], dtype=ty)
        assert result_type([x, y], list(shapes)) == str(torch.result_type(a, b)).removeprefix("torch.")
    for scalar in (1, 1.5, True):
        expected = torch.result_type(torch.zeros(2, dtype=tx), scalar)
        assert result_type([x], [(2,)], [scalar]) == str(expected).removeprefix("torch.")


# --- in a spec: the problem is at the consuming node's line and names both nodes and dtypes ------

def problems_of(spec):
    with pytest.raises(SpecError) as e:
        specbuild.validate(spec)
    return [p for p in e.value.problems if p.severity == "error"]


def test_an_integer_input_fed_to_linear():
    (p,) = problems_of("specbuild: 1\nname: m\ninputs:\n  ids: {shape: [10], dtype: long}\n"
                       "layers:\n  - {name: fc1, type: Linear, out_features: 4}\n")
    assert (p.line, p.node) == (6, "fc1")
    assert p.message == "Linear 'fc1' needs float32 input, but input 'ids' is int64"
    assert p.hint == "declare it float32, or feed it through an Embedding"


def test_floats_fed_to_an_embedding():
    (p,) = problems_of("specbuild: 1\nname: m\ninputs: {x: [10]}\nlayers:\n"
                       "  - {name: emb, type: Embedding, num_embeddings: 50, embedding_dim: 8}\n")
    assert (p.line, p.node) == (5, "emb")
    assert p.message == "Embedding 'emb' needs integer indices (int64 or int32), but input 'x' is float32"
    assert p.hint == "declare it `dtype: long` (token ids)"


def test_a_node_that_gives_the_wrong_dtype_is_named():
    (p,) = problems_of("""\
specbuild: 1
name: m
inputs: {ids: {shape: [10], dtype: long}}
layers:
  - {name: total, type: sum, dim: 1, keepdim: true}
  - {name: fc, type: Linear, out_features: 2}
""")
    assert (p.line, p.node) == (6, "fc")
    assert p.message == "Linear 'fc' needs float32 input, but 'total' gives int64"
    assert p.hint == "its weights are float32; token ids go through an Embedding first"


def test_float64_into_a_layer_with_weights():
    (p,) = problems_of("specbuild: 1\nname: m\ninputs: {x: {shape: [4], dtype: float64}}\n"
                       "layers:\n  - {type: relu}\n  - {name: fc, type: Linear, out_features: 2}\n")
    assert p.message == "Linear 'fc' needs float32 input, but 'relu_0' gives float64"


@pytest.mark.parametrize("layer, message", [
    ("{name: m, type: mean}", "mean 'm' needs floating-point input, but input 'ids' is int64"),
    ("{name: s, type: softmax, dim: 1}", "softmax 's' needs floating-point input, but input 'ids' is int64"),
])
def test_float_only_functions_refuse_integers(layer, message):
    (p,) = problems_of(f"specbuild: 1\nname: m\ninputs: {{ids: {{shape: [3], dtype: long}}}}\nlayers:\n  - {layer}\n")
    assert p.message == message and p.hint == "declare it float32"


def test_integer_functions_and_promotion_pass():
    spec = """\
specbuild: 1
name: m
inputs: {ids: {shape: [6], dtype: long}, w: [6]}
layers:
  - {name: r, type: relu, in: ids}
  - {name: quot, type: div, in: [r, ids]}
  - {name: both, type: add, in: [quot, w]}
  - {name: emb, type: Embedding, in: ids, num_embeddings: 9, embedding_dim: 6}
  - {name: pooled, type: amax, dim: 1}
  - {name: out, type: mul, in: [both, pooled]}
"""
    model = specbuild.build_model(spec)
    shapes = specbuild.spec.validate.check(spec).shapes["m"]
    assert [shapes[n].dtype for n in ("r", "quot", "both", "emb", "out")] == ["int64"] + ["float32"] * 4
    out = model(torch.randint(1, 9, (2, 6)), torch.randn(2, 6))
    assert out.dtype == torch.float32 and out.shape == (2, 6)


def test_sequential_names_the_nested_layer():
    (p,) = problems_of("""\
specbuild: 1
name: m
inputs: {ids: {shape: [6], dtype: long}}
layers:
  - name: seq
    type: Sequential
    layers: [{type: ReLU}, {type: Linear, out_features: 2}]
""")
    assert (p.line, p.node) == (5, "seq")
    assert p.message == ("Sequential 'seq': its layers[1] (Linear) needs float32 input, "
                         "but its layers[0] (ReLU) gives int64")


def test_blocks_repeat_and_share_carry_dtypes():
    spec = """\
specbuild: 1
name: m
inputs: {ids: {shape: [5], dtype: long}}
blocks:
  pick:
    layers:
      - {type: Embedding, num_embeddings: 7, embedding_dim: 4}
layers:
  - {name: e, type: pick, in: ids}
  - {name: same, type: relu, repeat: 3}
  - {name: fc, type: Linear, out_features: 4}
  - {name: again, share: fc}
"""
    shapes = specbuild.spec.validate.check(spec).shapes["m"]
    assert {n: shapes[n].dtype for n in ("e", "same", "fc", "again")} == dict.fromkeys(("e", "same", "fc", "again"), "float32")
    inner, call = problems_of(spec.replace("in: ids}", "in: ids}\n  - {name: f, type: pick, in: e}"))
    assert (inner.line, inner.node) == (7, "embedding_0")
    assert inner.message == ("Embedding 'embedding_0' needs integer indices (int64 or int32), "
                             "but block input 'x' is float32")
    assert call.message.startswith("block 'pick' does not fit its input [N, 5, 4]")
    (p,) = problems_of(spec.replace("type: relu, repeat: 3", "type: relu, in: ids, repeat: 2"))
    assert p.message == "Linear 'fc' needs float32 input, but 'same' gives int64"
    (p,) = problems_of(spec.replace("relu, repeat: 3", "Linear, out_features: 4, repeat: 2")
                       .replace("in: ids}", "in: ids}\n  - {type: sum, in: ids, dim: 1, keepdim: true}"))
    assert p.message == "Linear 'same' needs float32 input, but 'sum_1' gives int64"
