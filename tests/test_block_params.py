"""Blocks with params, blocks inside Sequential and `repeat:` lists, `when:`, `tie:`, and the
three bugs found on the way to real architectures (issue 9)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import specbuild
from specbuild.errors import SpecError
from specbuild.spec.validate import check
from cli_runner import line_of

STAGE = """\
specbuild: 1
name: stages
inputs:
  x: [8]
blocks:
  Res:
    params: {width: ~, down: false, scale: 1}
    layers:
      - {name: fc, type: Linear, out_features: "${width * scale}"}
      - {name: act, type: relu}
      - {name: proj, type: Linear, out_features: "${width * scale}", in: x, when: "${down}"}
      - {name: out, type: add, in: [act, proj]}
layers:
"""


def build(text: str):
    return specbuild.build_model(text)


def errors_of(text: str) -> list:
    with pytest.raises(SpecError) as caught:
        check(text)
    return [p for p in caught.value.problems if p.severity == "error"]


def test_params_reach_the_block_and_when_leaves_a_layer_out():
    model = build(STAGE + "  - {name: a, type: Res, width: 8}\n  - {name: b, type: Res, width: 4, down: true}\n")
    assert list(model.state_dict()) == ["a.fc.weight", "a.fc.bias", "b.fc.weight", "b.fc.bias",
                                        "b.proj.weight", "b.proj.bias"]
    assert model.b.fc.out_features == 4
    x = torch.randn(3, 8)
    a = model.a.fc(x).relu() + x                    # no proj: `out` reads act + x (proj's input)
    torch.testing.assert_close(model(x), model.b.fc(a).relu() + model.b.proj(a))


def test_repeat_takes_a_list_of_per_copy_arguments_keeping_the_sequential_keys():
    model = build(STAGE + "  - {name: stage, type: Res, width: 4, repeat: [{down: true}, {}, {scale: 1}]}\n")
    assert list(model.stage) and isinstance(model.stage, nn.Sequential) and len(model.stage) == 3
    keys = list(model.state_dict())
    assert "stage.0.proj.weight" in keys and not any(k.startswith("stage.1.proj") for k in keys)
    assert model(torch.randn(2, 8)).shape == (2, 4)


def test_blocks_stand_inside_sequential_with_positions_renumbered_by_when():
    text = STAGE + """\
  - name: body
    type: Sequential
    layers:
      - {type: Res, width: 8}
      - {type: ReLU, when: false}
      - {type: Res, width: 6, down: true}
      - {type: Linear, out_features: 2}
"""
    model = build(text)
    assert [type(m).__name__ for m in model.body] == ["Res", "Res", "Linear"]
    assert "body.1.proj.weight" in model.state_dict() and "body.2.weight" in model.state_dict()
    assert model(torch.randn(5, 8)).shape == (5, 2)


def test_a_block_param_is_checked_at_the_line_of_its_use():
    text = STAGE + "  - {name: a, type: Res, widht: 8}\n"
    problems = errors_of(text)
    (unknown,) = [p for p in problems if p.message == "block 'Res' has no param 'widht'"]
    assert unknown.line == line_of(text, "widht") and "did you mean 'width'?" in unknown.hint
    assert unknown.column == text.splitlines()[unknown.line - 1].index("widht") + 1
    assert any(p.message == "block 'Res' needs its param 'width' (it has no default)" for p in problems)


def test_bug_block_arguments_are_no_longer_silently_dropped():
    text = STAGE.replace("    params: {width: ~, down: false, scale: 1}\n", "").replace(
        '"${width * scale}"', "4").replace(', when: "${down}"', "") + "  - {name: a, type: Res, planes: 64}\n"
    (problem,) = errors_of(text)
    assert problem.message == "block 'Res' has no param 'planes'"
    assert "declare it under blocks.Res.params" in problem.hint


def test_an_error_inside_an_instance_points_into_the_block_and_names_the_use():
    text = STAGE + "  - {name: a, type: Res, width: 8, scale: 0}\n"
    problems = errors_of(text)
    assert problems[0].line == line_of(text, "name: fc,")
    assert "out_features" in problems[0].path
    use = problems[-1]
    assert use.line == line_of(text, "name: a,") and "width=8, down=false, scale=0" in use.message


def test_blocks_with_params_inside_blocks_with_params():
    text = STAGE.replace("layers:\n  - {name: fc", "layers:\n  - {name: fc", 1) + "  - {name: w, type: Wrap, n: 3}\n"
    text = text.replace("blocks:\n", "blocks:\n  Wrap:\n    params: {n: 2}\n    layers:\n"
                                     "      - {name: inner, type: Res, width: \"${2 * n}\", down: \"${n > 2}\"}\n")
    model = build(text)
    assert model.w.inner.fc.out_features == 6 and hasattr(model.w.inner, "proj")


def test_an_expression_may_mix_block_params_and_the_specs_params():
    text = STAGE.replace("inputs:\n  x: [8]", "params: {factor: 3}\ninputs:\n  x: [8]").replace(
        '"${width * scale}"', '"${width * factor}"') + "  - {name: a, type: Res, width: 8, down: true}\n"
    model = build(text)
    assert model.a.fc.out_features == model.a.proj.out_features == 24


def test_when_false_at_the_top_level_reads_its_input_and_outputs_follow():
    text = """\
specbuild: 1
name: m
params: {extra: false}
inputs:
  x: [4]
layers:
  - {name: fc, type: Linear, out_features: 4}
  - {name: more, type: Linear, out_features: 4, when: "${extra}"}
  - {name: act, type: relu}
outputs: {features: more, out: act}
"""
    model = build(text)
    assert "more.weight" not in model.state_dict()
    x = torch.randn(2, 4)
    out = model(x)
    torch.testing.assert_close(out["features"], model.fc(x))    # `more` left out: it reads fc
    assert torch.equal(out["out"], out["features"].relu())
    assert "more.weight" in specbuild.build_model(text, overrides={"extra": True}).state_dict()


TIED = """\
specbuild: 1
name: m
inputs:
  idx: {shape: [8], dtype: long}
layers:
  - {name: wte, type: Embedding, num_embeddings: 50, embedding_dim: 16}
  - {name: lm_head, type: Linear, out_features: OUT, bias: false, tie: {weight: SOURCE}}
"""


def test_bug_sharing_an_embedding_with_float_input_is_a_validation_error():
    text = TIED.replace("type: Linear, out_features: OUT, bias: false, tie: {weight: SOURCE}", "share: wte")
    (problem,) = errors_of(text)
    assert problem.line == 7 and problem.node == "lm_head"
    assert problem.message == "Embedding 'lm_head' needs integer indices (int64 or int32), but 'wte' gives float32"


def test_tie_makes_one_tensor_counted_once():
    model = build(TIED.replace("OUT", "50").replace("SOURCE", "wte.weight"))
    assert model.lm_head.weight is model.wte.weight
    assert list(model.state_dict()) == ["wte.weight", "lm_head.weight"]
    (summary,) = specbuild.summary(TIED.replace("OUT", "50").replace("SOURCE", "wte.weight"))
    assert summary.params == 800 == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("out, source, fragment", [
    ("40", "wte.weight", "lm_head.weight is [40, 16] but wte.weight is [50, 16]"),
    ("50", "wte.weigth", "'wte' has no parameter 'weigth'"),
    ("50", "wtf.weight", "'wtf' is no layer"),
])
def test_tie_problems_are_reported_at_the_tie(out, source, fragment):
    text = TIED.replace("OUT", out).replace("SOURCE", source)
    (problem,) = errors_of(text)
    assert fragment in problem.message and problem.line == 7


def test_a_block_cannot_stand_where_torch_calls_the_layer_itself():
    text = STAGE + "  - {name: w, type: weight_norm, module: {type: Res, width: 4}}\n"
    problems = errors_of(text)
    assert "block 'Res' cannot be given as `module`" in problems[0].message
