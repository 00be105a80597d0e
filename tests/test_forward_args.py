"""`forward:`: arguments of a module's forward call (MultiheadAttention's attn_mask, need_weights;
TransformerEncoder's mask, is_causal), checked at validation and passed in the generated call."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import specbuild
from specbuild.errors import SpecError
from specbuild.spec.validate import check
from cli_runner import line_of

ATTENTION = """\
specbuild: 1
name: causal
inputs:
  x: [8, 16]
  mask: {shape: [8, 8], dtype: bool}
layers:
  - {name: m, type: slice, in: mask, at: "[0]"}         # one [L, S] mask for every sample and head
  - {name: attn, type: MultiheadAttention, num_heads: 2, batch_first: true, in: [x, x, x],
     forward: FORWARD}
  - {name: out, type: item, index: INDEX}
"""


def attention(forward: str, index: int = 0) -> str:
    return ATTENTION.replace("FORWARD", forward).replace("INDEX", str(index))


def errors_of(text: str) -> list:
    with pytest.raises(SpecError) as caught:
        check(text)
    return [p for p in caught.value.problems if p.severity == "error"]


def causal_mask(n: int, length: int) -> torch.Tensor:
    return torch.ones(n, length, length, dtype=torch.bool).triu(1)


def test_multihead_attention_with_a_mask_and_no_weights():
    text = attention("{need_weights: false, attn_mask: m, is_causal: true}")
    model = specbuild.build_model(text)
    assert "self.attn(x, x, x, need_weights = False, attn_mask = m, is_causal = True)" in model.code
    x, mask = torch.randn(3, 8, 16), causal_mask(3, 8)
    expected, weights = model.attn(x, x, x, attn_mask=mask[0], need_weights=False)
    assert weights is None
    torch.testing.assert_close(model(x, mask), expected)
    (summary,) = specbuild.summary(text)
    assert [r.output for r in summary.rows if r.name == "attn"] == ["([N, 8, 16], None)"]


def test_the_weights_that_need_weights_false_drops_cannot_be_read():
    (problem,) = errors_of(attention("{need_weights: false}", index=1))
    assert problem.message.startswith("value 1 of ([N, 8, 16], None) is None")
    assert "need_weights: false" in problem.hint


def test_weights_per_head_have_their_shape():
    text = attention("{average_attn_weights: false, attn_mask: m}", index=1)
    (summary,) = specbuild.summary(text)
    assert summary.rows[-1].output == "[N, 2, 8, 8]"
    model = specbuild.build_model(text)
    assert model(torch.randn(4, 8, 16), causal_mask(4, 8)).shape == (4, 2, 8, 8)


@pytest.mark.parametrize("forward, fragment, key", [
    ("{is_causal: true}", "is_causal is a hint that its attn_mask is causal, and it is given no attn_mask", None),
    ("{need_weight: false}", "MultiheadAttention's forward has no parameter 'need_weight'", "need_weight"),
    ("{query: m}", "'query' is given by `in:` already (its input 0)", "query"),
    ("{attn_mask: mask_}", "`forward: {attn_mask: mask_}` names 'mask_', which is no input or layer", "attn_mask"),
    ("{attn_mask: x}", "its attn_mask [N, 8, 16] would need N * 2 masks in dim 0", None),
])
def test_forward_mistakes_are_reported_at_their_line(forward, fragment, key):
    text = attention(forward)
    problems = errors_of(text)
    assert any(fragment in p.message for p in problems), [str(p) for p in problems]
    problem = next(p for p in problems if fragment in p.message)
    assert problem.node == "attn"
    assert problem.line == (line_of(text, "forward:") if key else line_of(text, "name: attn"))
    if key == "need_weight":
        assert problem.hint == "did you mean 'need_weights'?"


def test_transformer_encoder_takes_its_causal_mask_by_name():
    text = """\
specbuild: 1
name: encoder
inputs:
  x: [6, 16]
  mask: {shape: [6, 6], dtype: bool}
layers:
  - {name: m, type: slice, in: mask, at: "[0]"}
  - name: encoder
    type: TransformerEncoder
    num_layers: 2
    encoder_layer: {type: TransformerEncoderLayer, nhead: 2, batch_first: true, dropout: 0.0}
    enable_nested_tensor: false
    in: x
    forward: {mask: m, is_causal: true}
"""
    model = specbuild.build_model(text).eval()
    x, mask = torch.randn(2, 6, 16), causal_mask(2, 6)
    with torch.no_grad():
        torch.testing.assert_close(model(x, mask), model.encoder(x, mask=mask[0], is_causal=True))
    (problem,) = errors_of(text.replace("mask: m, is_causal", "is_causal"))
    assert "TransformerEncoder's is_causal is a hint that its src_mask is causal" in problem.message


@pytest.mark.parametrize("layer, fragment", [
    ("{name: act, type: relu, forward: {inplace: true}}", "and relu is a function"),
    ("{name: act, type: Pass, forward: {inplace: true}}", "and Pass is a block"),
    ("{name: act, share: fc, forward: {inplace: true}}", "a `share:` node takes no type or arguments"),
])
def test_forward_is_for_modules(layer, fragment):
    text = ("specbuild: 1\nname: m\ninputs: {x: [4]}\nblocks:\n  Pass:\n    layers: [{type: Identity}]\n"
            f"layers:\n  - {{name: fc, type: Linear, out_features: 4}}\n  - {layer}\n")
    problems = errors_of(text)
    assert any(fragment in p.message for p in problems), [str(p) for p in problems]


class Scaled(nn.Module):
    def forward(self, x, scale: float = 1.0, shift=None):
        return x * scale if shift is None else x * scale + shift


def test_a_registered_type_takes_forward_arguments_shapes_from_torch():
    specbuild.register_layer("ScaledByForward", Scaled, replace=True)
    try:
        text = ("specbuild: 1\nname: m\ninputs: {x: [4], b: [4]}\nlayers:\n"
                "  - {name: s, type: ScaledByForward, in: x, forward: {scale: 3.0, shift: b}}\n")
        model = specbuild.build_model(text)
        x, b = torch.randn(2, 4), torch.randn(2, 4)
        torch.testing.assert_close(model(x, b), x * 3.0 + b)
        (problem,) = errors_of(text.replace("scale: 3.0", "scal: 3.0"))
        assert problem.message == "ScaledByForward's forward has no parameter 'scal'"
    finally:
        specbuild.unregister_layer("ScaledByForward")
