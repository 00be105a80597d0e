"""The tensor functions for attention and masks: split, unflatten, expand, repeat_interleave, tril,
triu, masked_fill, where, scaled_dot_product_attention, arange and constant.

Each is built into a model from a small spec and run on real tensors at two batch sizes: the
outputs' shapes and dtypes must be what shape inference said (check(spec).shapes), and their
values what the same torch call, written by hand, gives.  Then the mistakes validation must
catch, each reported at the node with its name, and dropout inside attention in training only.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import specbuild
from specbuild import SpecError
from specbuild.spec.validate import check

BATCHES = (2, 5)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def make_spec(inputs: dict, layers: list, outputs=None) -> dict:
    spec = {"specbuild": 1, "name": "m", "inputs": inputs, "layers": layers}
    if outputs is not None:
        spec["outputs"] = outputs
    return spec


def _dtype(t) -> str:
    return str(t.dtype).removeprefix("torch.")


def _agrees(shape, inferred, dtype, inferred_dtype, batch):
    """A tensor (or a tuple of them) against the inferred shape and dtype: "N" is the batch, None any size."""
    if isinstance(inferred, list):
        assert isinstance(shape, tuple) and len(shape) == len(inferred)
        for s, i, d, di in zip(shape, inferred, dtype, inferred_dtype):
            _agrees(s, i, d, di, batch)
        return
    got = tuple(shape.shape)
    assert len(got) == len(inferred) and all(
        i is None or g == (batch if i == "N" else i) for g, i in zip(got, inferred)), (got, inferred)
    assert _dtype(shape) == inferred_dtype, (_dtype(shape), inferred_dtype)


def run(spec, make_inputs, expected, outputs=None):
    """Build `spec`, run it at each batch size on make_inputs(batch), compare with inference and
    with expected(*inputs) (a tensor or a tuple, as the model returns)."""
    model = specbuild.build_model(spec)
    shapes = check(spec).shapes["m"]
    names = outputs or [spec.get("outputs") or spec["layers"][-1]["name"]]
    for batch in BATCHES:
        inputs = make_inputs(batch)
        with torch.no_grad():
            got = model(*inputs)
            want = expected(*inputs)
        got_list = list(got) if len(names) > 1 else [got]
        want_list = list(want) if len(names) > 1 else [want]
        for name, g, w in zip(names, got_list, want_list):
            node = shapes[name]
            _agrees(g, node.output, _dtypes_of(g), node.dtype, batch)
            if isinstance(w, (tuple, list)):
                for a, b in zip(g, w):
                    torch.testing.assert_close(a, b)
            else:
                torch.testing.assert_close(g, w)
    return model


def _dtypes_of(value):
    return [_dtypes_of(v) for v in value] if isinstance(value, (tuple, list)) else _dtype(value)


def problems(spec) -> list:
    with pytest.raises(SpecError) as info:
        specbuild.validate(spec)
    return [p for p in info.value.problems if p.severity == "error"]


# --- each function against torch -------------------------------------------------------------------

@pytest.mark.parametrize("sections, dim, pieces", [([3, 4], 1, 2), (3, 1, 3), (2, -1, 2), ([4], 2, 1)])
def test_split(sections, dim, pieces):
    spec = make_spec({"x": [7, 4]}, [{"name": "parts", "type": "split", "split_size_or_sections": sections,
                                      "dim": dim}])
    model = run(spec, lambda n: [torch.randn(n, 7, 4)],
                lambda x: torch.split(x, sections, dim))
    assert len(check(spec).shapes["m"]["parts"].output) == pieces
    assert "torch.functional.split(x, split_size_or_sections = " in model.code


def test_split_pieces_picked_with_item():
    spec = make_spec({"x": [6]}, [{"name": "parts", "type": "split", "split_size_or_sections": [2, 4], "dim": 1},
                                  {"name": "tail", "type": "item", "index": 1}])
    run(spec, lambda n: [torch.randn(n, 6)], lambda x: x[:, 2:])


@pytest.mark.parametrize("dim, sizes, want", [(2, [4, 16], (4, 16)), (-1, [-1, 8], (8, 8)), (1, [5, 1], (5, 1))])
def test_unflatten(dim, sizes, want):
    spec = make_spec({"x": [5, 64]}, [{"name": "u", "type": "unflatten", "dim": dim, "sizes": sizes}])
    run(spec, lambda n: [torch.randn(n, 5, 64)], lambda x: torch.unflatten(x, dim, sizes))
    out = check(spec).shapes["m"]["u"].output
    assert out == (("N", 5) + want if dim == 2 or dim == -1 else ("N",) + want + (64,))


@pytest.mark.parametrize("size", [[-1, 3, 4], [-1, -1, 4], [2, -1, 3, -1]])
def test_expand(size):
    spec = make_spec({"x": [1, 4]}, [{"name": "e", "type": "expand", "size": size}])
    model = run(spec, lambda n: [torch.randn(n, 1, 4)], lambda x: x.expand(*size))
    assert f"x.expand({', '.join(map(str, size))})" in model.code


@pytest.mark.parametrize("repeats, dim", [(2, 1), (3, -1), (1, 0), (2, None)])
def test_repeat_interleave(repeats, dim):
    spec = make_spec({"x": [3, 2]}, [{"name": "r", "type": "repeat_interleave", "repeats": repeats, "dim": dim}])
    run(spec, lambda n: [torch.randn(n, 3, 2)], lambda x: torch.repeat_interleave(x, repeats, dim))


@pytest.mark.parametrize("name, fn", [("tril", torch.tril), ("triu", torch.triu)])
@pytest.mark.parametrize("diagonal", [0, 1, -1])
def test_tril_triu(name, fn, diagonal):
    spec = make_spec({"x": [4, 4]}, [{"name": "t", "type": name, "diagonal": diagonal}])
    run(spec, lambda n: [torch.randn(n, 4, 4)], lambda x: fn(x, diagonal))


MASKED = """\
specbuild: 1
name: m
inputs:
  scores: [4, 6]
  keep: {shape: [1, 6], dtype: bool}
layers:
  - {name: hidden, type: masked_fill, in: [scores, keep], value: -.inf}
  - {name: weights, type: softmax, dim: -1}
"""


def test_masked_fill_with_minus_infinity_from_yaml():
    def inputs(n):
        keep = torch.rand(n, 1, 6) > 0.3
        keep[..., 0] = False                    # every row keeps one score at least
        return [torch.randn(n, 4, 6), keep]
    model = specbuild.build_model(MASKED)
    assert "torch.masked_fill(scores, keep, value = -inf)" in model.code
    shapes = check(MASKED).shapes["m"]
    assert shapes["hidden"].output == ("N", 4, 6) and shapes["hidden"].dtype == "float32"
    for n in BATCHES:
        x, keep = inputs(n)
        want = torch.softmax(x.masked_fill(keep, -math.inf), -1)
        torch.testing.assert_close(model(x, keep), want)


# every spec input has the batch dim in front: [1, 4] is [N, 1, 4]
@pytest.mark.parametrize("x, mask", [([3, 4], [3, 4]), ([3, 4], [1, 4]), ([1, 4], [3, 4])])
def test_masked_fill_broadcasts(x, mask):
    spec = make_spec({"x": x, "mask": {"shape": mask, "dtype": "bool"}},
                     [{"name": "f", "type": "masked_fill", "in": ["x", "mask"], "value": 2.5}])
    run(spec, lambda n: [torch.randn(n, *x), torch.rand(n, *mask) > 0.5],
        lambda a, m: torch.masked_fill(a, m, 2.5))


def test_masked_fill_keeps_an_integer_dtype():
    spec = make_spec({"ids": {"shape": [5], "dtype": "long"}, "pad": {"shape": [5], "dtype": "bool"}},
                     [{"name": "f", "type": "masked_fill", "in": ["ids", "pad"], "value": 0}])
    run(spec, lambda n: [torch.randint(1, 9, (n, 5)), torch.rand(n, 5) > 0.5],
        lambda ids, pad: ids.masked_fill(pad, 0))
    assert check(spec).shapes["m"]["f"].dtype == "int64"


@pytest.mark.parametrize("y_shape, y_dtype, out_dtype", [([3, 4], "float32", "float32"), ([1, 4], "long", "float32"),
                                                          ([1, 1], "float64", "float64")])
def test_where(y_shape, y_dtype, out_dtype):
    spec = make_spec({"c": {"shape": [3, 1], "dtype": "bool"}, "x": [3, 4], "y": {"shape": y_shape, "dtype": y_dtype}},
                     [{"name": "w", "type": "where", "in": ["c", "x", "y"]}])
    torch_y = getattr(torch, {"long": "int64"}.get(y_dtype, y_dtype))
    run(spec, lambda n: [torch.rand(n, 3, 1) > 0.5, torch.randn(n, 3, 4), torch.randn(n, *y_shape).to(torch_y)],
        torch.where)
    assert check(spec).shapes["m"]["w"].dtype == out_dtype


QKV = {"q": [2, 5, 8], "k": [2, 6, 8], "v": [2, 6, 3]}


def _qkv(n):
    return [torch.randn(n, 2, 5, 8), torch.randn(n, 2, 6, 8), torch.randn(n, 2, 6, 3)]


@pytest.mark.parametrize("args", [{}, {"is_causal": True}, {"scale": 0.25}, {"is_causal": True, "scale": 1.0}])
def test_attention(args):
    spec = make_spec(QKV, [{"name": "a", "type": "scaled_dot_product_attention", "in": ["q", "k", "v"], **args}])
    run(spec, _qkv, lambda q, k, v: F.scaled_dot_product_attention(q, k, v, **args))
    assert check(spec).shapes["m"]["a"].output == ("N", 2, 5, 3)


@pytest.mark.parametrize("mask_shape, dtype", [([1, 5, 6], "bool"), ([2, 5, 6], "float32"), ([1, 1, 6], "bool")])
def test_attention_with_a_mask(mask_shape, dtype):
    spec = make_spec({**QKV, "mask": {"shape": mask_shape, "dtype": dtype}},
                     [{"name": "a", "type": "scaled_dot_product_attention", "in": ["q", "k", "v", "mask"]}])

    def inputs(n):
        mask = torch.rand(n, *mask_shape)
        if dtype == "bool":
            mask = mask > 0.3
            mask[..., 0] = True                     # no row masks every key
        return _qkv(n) + [mask]
    run(spec, inputs, lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m))


def test_attention_batch_dims_broadcast():
    spec = make_spec({"q": [1, 5, 8], "k": [3, 6, 8], "v": [1, 6, 4]},
                     [{"name": "a", "type": "scaled_dot_product_attention", "in": ["q", "k", "v"]}])
    run(spec, lambda n: [torch.randn(n, 1, 5, 8), torch.randn(n, 3, 6, 8), torch.randn(n, 1, 6, 4)],
        F.scaled_dot_product_attention)
    assert check(spec).shapes["m"]["a"].output == ("N", 3, 5, 4)


POSITIONS = """\
specbuild: 1
name: m
inputs:
  ids: {shape: [6], dtype: long}
layers:
  - {name: tok, type: Embedding, num_embeddings: 20, embedding_dim: 8}
  - {name: where_at, type: arange, in: ids, dim: 1}
  - {name: pos, type: Embedding, num_embeddings: 6, embedding_dim: 8}
  - {name: x, type: add, in: [tok, pos]}
"""


def test_arange_positions_have_no_batch_dim_and_broadcast():
    shapes = check(POSITIONS).shapes["m"]
    assert (shapes["where_at"].output, shapes["where_at"].dtype) == ((6,), "int64")
    assert shapes["pos"].output == (6, 8)
    assert shapes["x"].output == ("N", 6, 8)
    model = specbuild.build_model(POSITIONS)
    assert "where_at_size = ids.size(1)" in model.code
    assert "where_at = torch.arange(where_at_size, device = where_at_device)" in model.code
    for n in BATCHES:
        ids = torch.randint(0, 20, (n, 6))
        with torch.no_grad():
            want = model.tok(ids) + model.pos(torch.arange(6))
            torch.testing.assert_close(model(ids), want)


def test_arange_of_the_batch_dim():
    spec = make_spec({"x": [3]}, [{"name": "n", "type": "arange", "dim": 0}])
    run(spec, lambda n: [torch.randn(n, 3)], lambda x: torch.arange(x.shape[0]))
    assert check(spec).shapes["m"]["n"].output == ("N",)


@pytest.mark.parametrize("value, dtype, want", [
    ([[1, 0], [0, 1]], "float32", torch.eye(2)),
    ([[1, 0], [0, 1]], None, torch.eye(2, dtype=torch.long)),
    ([True, False], None, torch.tensor([True, False])),
    ([1.5, 2], "long", torch.tensor([1, 2])),
    (3, None, torch.tensor(3)),
    ([], None, torch.tensor([])),
])
def test_constant(value, dtype, want):
    layer = {"name": "c", "type": "constant", "in": "x", "value": value, **({"dtype": dtype} if dtype else {})}
    spec = make_spec({"x": [2]}, [layer])
    model = run(spec, lambda n: [torch.randn(n, 2)], lambda x: want)
    assert "c_device = x.device" in model.code


def test_a_constant_mask_in_attention():
    causal = [[i >= j for j in range(4)] for i in range(4)]
    spec = make_spec({"x": [4, 8]}, [
        {"name": "mask", "type": "constant", "in": "x", "value": causal},
        {"name": "a", "type": "scaled_dot_product_attention", "in": ["x", "x", "x", "mask"]}], outputs="a")
    run(spec, lambda n: [torch.randn(n, 4, 8)], lambda x: F.scaled_dot_product_attention(x, x, x, is_causal=True))


def test_constant_plus_a_batched_input():
    spec = make_spec({"x": [2, 2]}, [{"name": "eye", "type": "constant", "in": "x", "value": [[1.0, 0], [0, 1]]},
                                     {"name": "y", "type": "add", "in": ["x", "eye"]}])
    run(spec, lambda n: [torch.randn(n, 2, 2)], lambda x: x + torch.eye(2))


# --- dropout in attention: in training only ------------------------------------------------------

DROPPED = make_spec(QKV, [{"name": "a", "type": "scaled_dot_product_attention", "in": ["q", "k", "v"],
                           "dropout_p": 0.5}])


def test_attention_dropout_applies_in_training_only():
    model = specbuild.build_model(DROPPED)
    q, k, v = _qkv(3)
    plain = F.scaled_dot_product_attention(q, k, v)
    model.eval()
    first, second = model(q, k, v), model(q, k, v)
    torch.testing.assert_close(first, second)
    torch.testing.assert_close(first, plain)
    model.train()
    one, two = model(q, k, v), model(q, k, v)
    assert not torch.allclose(one, two) and not torch.allclose(one, plain)


def test_attention_dropout_follows_an_outer_model_into_a_block():
    spec = {"specbuild": 1, "name": "m", "inputs": QKV,
            "blocks": {"attend": {"inputs": ["q", "k", "v"], "layers": [
                {"name": "a", "type": "scaled_dot_product_attention", "in": ["q", "k", "v"], "dropout_p": 0.5}]}},
            "layers": [{"name": "blk", "type": "attend", "in": ["q", "k", "v"]},
                       {"name": "fc", "type": "Linear", "out_features": 2}]}
    model = specbuild.build_model(spec).eval()
    q, k, v = _qkv(2)
    with torch.no_grad():
        torch.testing.assert_close(model(q, k, v), model(q, k, v))
        model.train()
        assert not torch.allclose(model(q, k, v), model(q, k, v))


def test_attention_without_dropout_emits_no_extra_node():
    layer = {k: v for k, v in DROPPED["layers"][0].items() if k != "dropout_p"}
    for args in ({}, {"dropout_p": 0}, {"dropout_p": 0.0}):
        model = specbuild.build_model(make_spec(QKV, [{**layer, **args}]))
        assert "training" not in model.code and "dropout_p" not in model.code, model.code
        assert len([n for n in model.graph.nodes if n.op == "call_function"]) == 1
    code = specbuild.build_model(DROPPED).code
    assert "a_training = self.training" in code
    assert "a_dropout_p = 0.5 * a_training" in code
    assert "dropout_p = a_dropout_p" in code


# --- mistakes validation catches, at the node ------------------------------------------------------

def test_a_float_mask_is_refused():
    (p,) = problems(make_spec({"x": [3, 4], "m": [3, 4]},
                              [{"name": "fill", "type": "masked_fill", "in": ["x", "m"], "value": 0.0}]))
    assert p.node == "fill"
    assert p.message == "masked_fill 'fill' needs a bool mask, but input 'm' is float32"
    assert p.hint == "declare it `dtype: bool`"


def test_a_float_condition_is_refused():
    (p,) = problems(make_spec({"c": [4], "x": [4], "y": [4]}, [{"name": "pick", "type": "where", "in": ["c", "x", "y"]}]))
    assert p.node == "pick" and "needs a bool condition, but input 'c' is float32" in p.message


def test_masked_fill_value_that_the_dtype_cannot_hold():
    (p,) = problems(make_spec({"ids": {"shape": [3], "dtype": "long"}, "m": {"shape": [3], "dtype": "bool"}},
                              [{"name": "fill", "type": "masked_fill", "in": ["ids", "m"], "value": -math.inf}]))
    assert p.node == "fill" and "fill with -inf" in p.message and "int64" in p.message


def test_attention_features_must_agree():
    (p,) = problems(make_spec({"q": [2, 5, 8], "k": [2, 6, 7], "v": [2, 6, 3]},
                              [{"name": "att", "type": "scaled_dot_product_attention", "in": ["q", "k", "v"]}]))
    assert p.node == "att"
    assert "query's and key's last dims (the features E) differ: 8 vs 7" in p.message
    assert "query [N, 2, 5, 8], key [N, 2, 6, 7]" in p.message


def test_attention_lengths_must_agree():
    (p,) = problems(make_spec({"q": [2, 5, 8], "k": [2, 6, 8], "v": [2, 7, 3]},
                              [{"name": "att", "type": "scaled_dot_product_attention", "in": ["q", "k", "v"]}]))
    assert p.node == "att" and "key's and value's lengths (S, their dim -2) differ: 6 vs 7" in p.message


def test_is_causal_with_a_mask_is_refused_at_the_argument():
    text = ("specbuild: 1\nname: m\ninputs: {q: [5, 8], mask: {shape: [5, 5], dtype: bool}}\nlayers:\n"
            "  - name: att\n    type: scaled_dot_product_attention\n    in: [q, q, q, mask]\n    is_causal: true\n")
    (p,) = problems(text)
    assert p.node == "att" and p.line == 8
    assert "takes no attn_mask (its 4th input) with is_causal: true" in p.message
    assert p.path.endswith("is_causal")


def test_attention_mask_that_does_not_fit_the_scores():
    (p,) = problems(make_spec({"q": [5, 8], "mask": {"shape": [5, 7], "dtype": "bool"}},
                              [{"name": "att", "type": "scaled_dot_product_attention", "in": ["q", "q", "q", "mask"]}]))
    assert p.node == "att" and "attn_mask [N, 5, 7] does not broadcast to the scores [N, 5, 5]" in p.message


def test_a_float64_mask_for_a_float32_query_is_refused():
    (p,) = problems(make_spec({"q": [5, 8], "mask": {"shape": [5, 5], "dtype": "float64"}},
                              [{"name": "att", "type": "scaled_dot_product_attention", "in": ["q", "q", "q", "mask"]}]))
    assert p.message == ("scaled_dot_product_attention 'att' needs a bool or float32 mask, "
                         "but input 'mask' is float64")
    assert p.hint == "declare it float32 or bool"


def test_an_integer_query_is_refused():
    (p,) = problems(make_spec({"q": {"shape": [5, 8], "dtype": "long"}},
                              [{"name": "att", "type": "scaled_dot_product_attention", "in": ["q", "q", "q"]}]))
    assert p.message == "scaled_dot_product_attention 'att' needs floating-point input, but input 'q' is int64"


def test_attention_dropout_must_be_a_probability():
    (p,) = problems(make_spec(QKV, [{"name": "att", "type": "scaled_dot_product_attention", "in": ["q", "k", "v"],
                                     "dropout_p": 1.5}]))
    assert p.node == "att" and "dropout_p must be a probability in [0, 1], not 1.5" in p.message


def test_split_sections_must_sum_to_the_dim():
    (p,) = problems(make_spec({"x": [7, 4]}, [{"name": "parts", "type": "split", "split_size_or_sections": [3, 3],
                                               "dim": 1}]))
    assert p.node == "parts" and p.path.endswith("split_size_or_sections")
    assert "the sections [3, 3] sum to 6, but dim 1 of [N, 7, 4] is 7" in p.message


def test_split_of_the_batch_is_refused():
    (p,) = problems(make_spec({"x": [7]}, [{"name": "parts", "type": "split", "split_size_or_sections": 2}]))
    assert p.node == "parts" and "dim 0 of [N, 7] is the batch size" in p.message


def test_expand_to_an_incompatible_size():
    (p,) = problems(make_spec({"x": [3, 4]}, [{"name": "big", "type": "expand", "size": [-1, 5, 4]}]))
    assert p.node == "big" and p.path.endswith("size")
    assert "expand of [N, 3, 4] to [-1, 5, 4]: dim 1 of the input is 3, not 1, so it cannot become 5" in p.message
    (p,) = problems(make_spec({"x": [1, 4]}, [{"name": "big", "type": "expand", "size": [4, -1, -1]}]))
    assert "dim 0 of the input is N (the batch), not 1, so it cannot become 4" in p.message
    (p,) = problems(make_spec({"x": [1, 4]}, [{"name": "big", "type": "expand", "size": [4]}]))
    assert "it names 1 dims, but its input has 3" in p.message


def test_unflatten_sizes_must_fit():
    (p,) = problems(make_spec({"x": [5, 64]}, [{"name": "u", "type": "unflatten", "dim": 2, "sizes": [5, 16]}]))
    assert p.node == "u" and "dim 2 of [N, 5, 64] is 64, which does not split into [5, 16]" in p.message


@pytest.mark.parametrize("layer, fragment", [
    ({"value": [[1, 2], [3]]}, "constant value is not rectangular"),
    ({"value": [2 ** 40], "dtype": "int32"}, "constant value holds 1099511627776, which int32 cannot hold"),
    ({"value": [math.inf], "dtype": "long"}, "constant value holds inf, which int64 cannot hold"),
    ({"value": "ones"}, "`value` for constant must be a number, a bool or a (nested) list of them, not 'ones'"),
    ({"value": [1], "dtype": "complex"}, "dtype"),
])
def test_bad_constants(layer, fragment):
    (p,) = problems(make_spec({"x": [2]}, [{"name": "c", "type": "constant", "in": "x", **layer}]))
    assert p.node == "c" and fragment in p.message, p.message


def test_arange_dim_out_of_range():
    (p,) = problems(make_spec({"x": [3]}, [{"name": "pos", "type": "arange", "dim": 2}]))
    assert p.node == "pos" and "arange dim 2 is out of range for a 2-d input" in p.message


def test_the_schema_knows_the_new_arguments():
    found = problems(make_spec({"x": [3]}, [{"name": "pos", "type": "arange", "dimm": 1}]))
    assert any("dimm" in p.message for p in found), found
    (p,) = problems(make_spec({"x": [3], "m": {"shape": [3], "dtype": "bool"}},
                              [{"name": "f", "type": "masked_fill", "in": ["x", "m"]}]))
    assert "value" in p.message


def test_made_tensors_follow_the_inputs_device():
    """arange and constant are made on their input's device (meta here, cuda in use), so they mix
    with the values there, where tensors made on the CPU would not."""
    spec = make_spec({"ids": {"shape": [6], "dtype": "long"}}, [
        {"name": "tok", "type": "Embedding", "num_embeddings": 20, "embedding_dim": 8},
        {"name": "at", "type": "arange", "in": "ids", "dim": 1},
        {"name": "pos", "type": "Embedding", "num_embeddings": 6, "embedding_dim": 8},
        {"name": "eye", "type": "constant", "in": "ids", "value": [1.0, 0, 0, 0, 0, 0, 0, 0]},
        {"name": "x", "type": "add", "in": ["tok", "pos", "eye"]}])
    model = specbuild.build_model(spec).to("meta")
    ids = torch.zeros(3, 6, dtype=torch.long, device="meta")
    out = model(ids)
    assert out.device.type == "meta" and out.shape == (3, 6, 8)
    with pytest.raises(RuntimeError, match="not on the expected device"):   # the test has teeth
        model.tok(ids) + torch.tensor([1.0, 0, 0, 0, 0, 0, 0, 0])
