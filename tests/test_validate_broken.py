"""Broken specs through `specbuild validate FILE`: every one exits 1, points at the
exact line, says what is wrong (with a did-you-mean where one fits) and never
shows a traceback.

Each case is (id, spec text, expected line or None, fragments of the message).
The line is checked on the output line that carries the first fragment, so a
right message on a wrong line fails.  Line numbers count from 1; HEAD is lines
1-2 of every spec below.
"""
from __future__ import annotations

import re

import pytest

import specbuild
from specbuild import SpecError

HEAD = "specbuild: 1\nname: m\n"
MLP_IN = HEAD + "inputs:\n  x: [784]\nlayers:\n"          # layers start on line 6
TRAIN = MLP_IN + "  - {name: fc, type: Linear, out_features: 10}\ntrain:\n"   # train keys on line 8

CASES = [
    # --- YAML syntax -------------------------------------------------------------------
    ("yaml-missing-colon", HEAD + "inputs:\n  x: [784]\nlayers\n  - {type: Linear, out_features: 10}\n",
     6, ["could not find expected ':'"]),
    ("yaml-bad-indentation", MLP_IN + "  - type: Linear\n     out_features: 10\n",
     7, ["mapping values are not allowed here"]),
    ("yaml-tab-indent", HEAD + "inputs:\n\tx: [784]\nlayers:\n  - {type: Linear, out_features: 10}\n",
     4, ["'\\t'", "YAML forbids tabs for indentation"]),
    ("yaml-unclosed-bracket", HEAD + "inputs:\n  x: [784\nlayers:\n  - {type: Linear, out_features: 10}\n",
     5, ["expected ',' or ']'"]),
    ("yaml-unclosed-brace", MLP_IN + "  - {type: Linear, out_features: 10\n  - {type: relu}\n",
     7, ["expected ',' or '}'"]),
    ("yaml-duplicate-key", MLP_IN + "  - {type: Linear, out_features: 10}\ninputs:\n  y: [3]\n",
     7, ["duplicate key 'inputs'", "first at line 3"]),
    ("yaml-two-documents", MLP_IN + "  - {type: relu}\n---\nname: n\n",
     7, ["one YAML document"]),
    ("yaml-unquoted-variable", HEAD + "params: {h: 3}\ninputs:\n  x: [4]\nlayers:\n"
     "  - {type: Linear, out_features: ${h}}\n", 7, ["expected ',' or '}'"]),
    ("yaml-top-level-list", "- specbuild: 1\n- name: m\n",
     1, ["top level of a spec must be a mapping", "not a list"]),
    ("yaml-not-utf8", b"specbuild: 1\nname: m\ndoc: caf\xe9\n", 3, ["not UTF-8", "0xe9"]),
    ("yaml-empty-file", "\n   \n", None, ["the spec is empty"]),
    # --- top-level keys -----------------------------------------------------------------
    ("key-layer-for-layers", HEAD + "inputs:\n  x: [784]\nlayer:\n  - {type: Linear, out_features: 10}\n",
     5, ["unknown key 'layer'", "did you mean 'layers'"]),
    ("key-ouputs", MLP_IN + "  - {name: fc, type: Linear, out_features: 10}\nouputs: fc\n",
     7, ["unknown key 'ouputs'", "did you mean 'outputs'"]),
    ("key-version-2", "specbuild: 2\nname: m\ninputs:\n  x: [4]\nlayers:\n  - {type: relu}\n",
     1, ["`specbuild` must be 1, not 2"]),
    ("key-name-missing", "specbuild: 1\ninputs:\n  x: [4]\nlayers:\n  - {type: relu}\n",
     1, ["missing required key 'name'"]),
    ("key-name-not-identifier", "specbuild: 1\nname: my model\ninputs:\n  x: [4]\nlayers:\n  - {type: relu}\n",
     2, ["'my model' is not a valid name"]),
    ("key-layers-is-mapping", HEAD + "inputs:\n  x: [4]\nlayers:\n  fc: {type: relu}\n",
     5, ["`layers` must be a list"]),
    # --- layer types --------------------------------------------------------------------
    ("type-Conv2D", HEAD + "inputs:\n  x: [1, 28, 28]\nlayers:\n  - {type: Conv2D, out_channels: 8, kernel_size: 3}\n",
     6, ["unknown layer type 'Conv2D'", "did you mean 'Conv2d'"]),
    ("type-rellu", MLP_IN + "  - {type: Linear, out_features: 10}\n  - {type: rellu}\n",
     7, ["unknown layer type 'rellu'", "did you mean 'relu'"]),
    ("type-missing", MLP_IN + "  - {name: a, out_features: 3}\n",
     6, ["the layer has no `type:`"]),
    ("layer-not-a-mapping", MLP_IN + "  - relu\n",
     6, ["must be a mapping, not 'relu'"]),
    ("type-nested-unknown", HEAD + "inputs:\n  x: [10, 16]\nlayers:\n  - type: TransformerEncoder\n"
     "    encoder_layer: {type: TransformerEncoderLayr, d_model: 16, nhead: 2}\n    num_layers: 2\n",
     7, ["unknown layer type 'TransformerEncoderLayr'", "did you mean 'TransformerEncoderLayer'"]),
    ("type-nested-with-in", HEAD + "inputs:\n  x: [10, 16]\nlayers:\n  - type: TransformerEncoder\n"
     "    encoder_layer: {type: TransformerEncoderLayer, d_model: 16, nhead: 2, in: x}\n    num_layers: 2\n",
     7, ["a layer given as an argument takes no `in:`"]),
    # --- arguments ----------------------------------------------------------------------
    ("arg-out_feature", MLP_IN + "  - {type: Linear, out_feature: 10}\n",
     6, ["unknown argument 'out_feature' for Linear", "did you mean 'out_features'"]),
    ("arg-string-for-int", MLP_IN + "  - type: Linear\n    out_features: \"12\"\n",
     7, ["`out_features` for Linear must be an integer, not '12'", "write the number without quotes"]),
    ("arg-bias-maybe", MLP_IN + "  - type: Linear\n    out_features: 12\n    bias: maybe\n",
     8, ["`bias` for Linear must be true or false, not 'maybe'"]),
    ("arg-kernel-size-list-of-1", HEAD + "inputs:\n  x: [1, 28, 28]\nlayers:\n  - type: Conv2d\n"
     "    out_channels: 8\n    kernel_size: [3]\n",
     8, ["`kernel_size` for Conv2d must be an integer or a list of 2 integers"]),
    ("arg-required-missing", MLP_IN + "  - {type: Linear}\n",
     6, ["missing required argument 'out_features' for Linear"]),
    ("arg-negative-size", MLP_IN + "  - {type: Linear, out_features: -3}\n",
     6, ["out_features must be an int >=", "not -3"]),
    ("arg-probability", MLP_IN + "  - {type: Dropout, p: 1.5}\n",
     6, ["must be a probability in [0, 1], not 1.5"]),
    ("arg-repeat-zero", MLP_IN + "  - {type: relu, repeat: 0}\n",
     6, ["`repeat` for relu must be", "not 0"]),
    ("input-shape-zero", HEAD + "inputs:\n  x: [0, 4]\nlayers:\n  - {type: relu}\n",
     4, ["inputs.x[0]", "not 0"]),
    ("input-dtype-typo", HEAD + "inputs:\n  x: {shape: [4], dtype: float33}\nlayers:\n  - {type: relu}\n",
     4, ["not 'float33'", "did you mean 'float32'"]),
    # --- wiring -------------------------------------------------------------------------
    ("in-dangling", MLP_IN + "  - {name: fc1, type: Linear, out_features: 10}\n"
     "  - {name: fc2, type: Linear, out_features: 10, in: fc}\n",
     7, ["`in:` names 'fc', which is no input or layer"]),
    ("cycle-of-two", HEAD + "inputs:\n  x: [8]\nlayers:\n  - {name: a, type: Linear, out_features: 8, in: b}\n"
     "  - {name: b, type: Linear, out_features: 8, in: a}\noutputs: b\n",
     6, ["the layers form a cycle: a -> b -> a"]),
    ("cycle-of-three", HEAD + "inputs:\n  x: [8]\nlayers:\n  - {name: a, type: add, in: [x, c]}\n"
     "  - {name: b, type: relu, in: a}\n  - {name: c, type: tanh, in: b}\noutputs: c\n",
     6, ["the layers form a cycle: a -> b -> c -> a"]),
    ("name-duplicate", MLP_IN + "  - {name: fc, type: Linear, out_features: 10}\n"
     "  - {name: fc, type: Linear, out_features: 10}\n",
     7, ["duplicate name 'fc' (first used on line 6)"]),
    ("outputs-null", MLP_IN + "  - {type: Linear, out_features: 10}\noutputs:\n",
     7, ["`outputs` must be"]),
    ("outputs-names-nothing", MLP_IN + "  - {name: fc, type: Linear, out_features: 10}\noutputs: fc9\n",
     7, ["output 'fc9' is no layer", "did you mean 'fc'"]),
    ("inputs-missing", HEAD + "layers:\n  - {type: Linear, out_features: 10}\n",
     1, ["the model has no inputs"]),
    ("inputs-several-no-in", HEAD + "inputs:\n  a: [4]\n  b: [4]\nlayers:\n  - {type: Linear, out_features: 10}\n",
     7, ["no `in:` and the model has several inputs (a, b)"]),
    ("share-unknown", HEAD + "inputs:\n  x: [8]\nlayers:\n  - {name: a, type: Linear, out_features: 8}\n"
     "  - {name: b, share: aa}\n",
     7, ["`share:` names 'aa', which is no layer", "did you mean 'a'"]),
    ("share-a-function", HEAD + "inputs:\n  x: [4]\nlayers:\n  - {name: a, type: relu}\n  - {share: a}\n",
     7, ["'a' is a tensor function and has no weights to share"]),
    ("arity-cat-one-input", HEAD + "inputs:\n  x: [8]\nlayers:\n  - {name: a, type: Linear, out_features: 8}\n"
     "  - {type: cat, in: [a]}\n",
     7, ["cat takes at least 2 input(s), but `in:` gives 1"]),
    ("arity-sub-three-inputs", HEAD + "inputs:\n  x: [4]\nlayers:\n  - {name: a, type: relu}\n"
     "  - {type: sub, in: [x, a, a]}\n",
     7, ["sub takes 2 input(s), but `in:` gives 3"]),
    # --- blocks and networks ------------------------------------------------------------
    ("block-uses-itself", HEAD + "blocks:\n  res:\n    layers:\n      - {type: res}\n"
     "inputs:\n  x: [8]\nlayers:\n  - {type: res}\n",
     4, ["blocks use each other in a cycle: res -> res"]),
    ("blocks-use-each-other", HEAD + "blocks:\n  ping:\n    layers:\n      - {type: pong}\n"
     "  pong:\n    layers:\n      - {type: ping}\ninputs:\n  x: [8]\nlayers:\n  - {type: ping}\n",
     4, ["blocks use each other in a cycle: ping -> pong -> ping"]),
    ("block-unknown-inner-type", HEAD + "blocks:\n  res:\n    layers:\n      - {type: Linearr, out_features: 8}\n"
     "inputs:\n  x: [8]\nlayers:\n  - {type: res}\n",
     6, ["unknown layer type 'Linearr'", "did you mean 'Linear'"]),
    ("block-arity", HEAD + "blocks:\n  pair:\n    inputs: [a, b]\n    layers:\n      - {type: add, in: [a, b]}\n"
     "inputs:\n  x: [8]\nlayers:\n  - {type: pair}\n",
     11, ["pair takes 2 input(s), but `in:` gives 1"]),
    ("gan-generator-unknown", HEAD + "networks:\n  gen:\n    inputs: {z: [8]}\n    layers:\n"
     "      - {type: Linear, out_features: 4}\n  disc:\n    inputs: {x: [4]}\n    layers:\n"
     "      - {type: Linear, out_features: 1}\ntrain:\n  generator: genn\n  discriminator: disc\n",
     13, ["names 'genn', which is no network", "did you mean 'gen'"]),
    # --- variables ----------------------------------------------------------------------
    ("var-undefined-typo", HEAD + "params:\n  hidden: 64\ninputs:\n  x: [784]\nlayers:\n"
     "  - {type: Linear, out_features: \"${hiden}\"}\n",
     8, ["undefined variable ${hiden}", "did you mean 'hidden'"]),
    ("var-undefined-no-params", MLP_IN + "  - {type: Linear, out_features: \"${hidden}\"}\n",
     6, ["undefined variable ${hidden}", "--set hidden="]),
    ("var-bad-syntax", HEAD + "params:\n  hidden: 64\ninputs:\n  x: [784]\nlayers:\n"
     "  - {type: Linear, out_features: \"${1bad}\"}\n",
     8, ["bad variable '${1bad}'"]),
    ("var-empty", HEAD + "params:\n  hidden: 64\ninputs:\n  x: [784]\nlayers:\n"
     "  - {type: Linear, out_features: \"${}\"}\n",
     8, ["bad variable '${}'"]),
    ("var-in-input-shape", HEAD + "params:\n  h: 3\ninputs:\n  x: ['${w}']\nlayers:\n  - {type: relu}\n",
     6, ["undefined variable ${w}"]),
    ("param-is-a-mapping", HEAD + "params:\n  h: {a: 1}\ninputs:\n  x: [4]\nlayers:\n  - {type: relu}\n",
     4, ["params.h", "not a mapping"]),
    # --- train --------------------------------------------------------------------------
    ("train-unknown-loss", TRAIN + "  loss: {type: CrossEntropyLos}\n",
     8, ["unknown loss type 'CrossEntropyLos'", "did you mean 'CrossEntropyLoss'"]),
    ("train-unknown-loss-in-list", TRAIN + "  loss: [{type: MSELoss}, {type: L1Los}]\n",
     8, ["unknown loss type 'L1Los'", "did you mean 'L1Loss'"]),
    ("train-loss-is-a-name", TRAIN + "  loss: CrossEntropyLoss\n",
     8, ["`loss` must be a mapping"]),
    ("train-loss-on-unknown", TRAIN + "  loss: {type: CrossEntropyLoss, on: fcc}\n",
     8, ["loss `on:` names 'fcc', which is no layer", "did you mean 'fc'"]),
    ("train-unknown-optimizer", TRAIN + "  loss: {type: CrossEntropyLoss}\n  optimizer: {type: Adamm, lr: 0.1}\n",
     9, ["unknown optimizer type 'Adamm'", "did you mean 'Adam'"]),
    ("train-optimizer-arg-typo", TRAIN + "  optimizer: {type: Adam, learning_rate: 0.1}\n",
     8, ["unknown argument 'learning_rate' for Adam"]),
    ("train-optimizer-lr-string", TRAIN + "  optimizer: {type: Adam, lr: fast}\n",
     8, ["`lr` for Adam must be a number >= 0, not 'fast'"]),
    ("train-unknown-scheduler", TRAIN + "  scheduler: {type: StepLr, step_size: 3}\n",
     8, ["unknown scheduler type 'StepLr'", "did you mean 'StepLR'"]),
    ("train-unknown-metric", TRAIN + "  metrics: [accuracy, acuracy]\n",
     8, ["not 'acuracy'", "did you mean 'accuracy'"]),
    ("train-key-epoch", TRAIN + "  epoch: 3\n",
     8, ["unknown key 'epoch'", "did you mean 'epochs'"]),
    ("train-epochs-negative", TRAIN + "  epochs: -1\n",
     8, ["`epochs` must be an integer >= 0, not -1"]),
    ("train-data-key-typo", TRAIN + "  data: {dataset: mnist, batchsize: 3}\n",
     8, ["unknown key 'batchsize'", "did you mean 'batch_size'"]),
    # --- shapes -------------------------------------------------------------------------
    ("shape-linear-784-after-conv", HEAD + "inputs:\n  x: [1, 28, 28]\nlayers:\n"
     "  - {type: Conv2d, out_channels: 32, kernel_size: 3, padding: 1}\n  - {type: MaxPool2d, kernel_size: 2}\n"
     "  - {type: flatten}\n  - {type: Linear, in_features: 784, out_features: 10}\n",
     9, ["in_features is 784 but its input has 6272 features", "set it to 6272"]),
    ("shape-kernel-larger-than-input", HEAD + "inputs:\n  x: [1, 4, 4]\nlayers:\n"
     "  - {type: Conv2d, out_channels: 8, kernel_size: 5}\n",
     6, ["kernel_size is too large for its input"]),
    ("shape-groupnorm-indivisible", HEAD + "inputs:\n  x: [6, 8, 8]\nlayers:\n"
     "  - {type: GroupNorm, num_groups: 4, num_channels: 6}\n",
     6, ["num_channels 6 is not divisible by num_groups 4"]),
    ("shape-conv-after-flatten", HEAD + "inputs:\n  x: [1, 28, 28]\nlayers:\n  - {type: flatten}\n"
     "  - {type: Conv2d, out_channels: 4, kernel_size: 3}\n",
     7, ["Conv2d expects a 3-d or 4-d input", "[N, 784]"]),
    ("shape-add-mismatch", HEAD + "inputs:\n  x: [8]\nlayers:\n  - {name: a, type: Linear, out_features: 4}\n"
     "  - {name: b, type: Linear, out_features: 5, in: x}\n  - {type: add, in: [a, b]}\n",
     8, ["does not broadcast", "a gives [N, 4], b gives [N, 5]"]),
]

IDS = [case[0] for case in CASES]
assert len(set(IDS)) == len(IDS) >= 40


def _line_with(lines: list[str], fragment: str) -> str:
    found = [line for line in lines if fragment in line]
    assert found, f"{fragment!r} not in the output:\n" + "\n".join(lines)
    return found[0]


@pytest.mark.parametrize("case_id, text, line, fragments", CASES, ids=IDS)
def test_broken_spec_through_cli(case_id, text, line, fragments, cli, write_spec):
    path = write_spec(text, name=f"{case_id}.yaml")
    result = cli("validate", path)
    assert result.rc == 1, result.text
    assert result.out == "", "nothing on stdout for a bad spec (no 'ok')"
    lines = result.lines()
    first = _line_with(lines, fragments[0])
    where = f"{path}:{line}:" if line is not None else f"{path}: "
    assert first.startswith(where), f"expected {where!r}, got:\n{first}"
    for fragment in fragments[1:]:
        assert fragment in first, f"{fragment!r} not in {first!r}"
    # every line is a located problem, or the closing count
    for text_line in lines:
        assert text_line.startswith(path + ":") or re.fullmatch(r"\d+ problems found", text_line), text_line


@pytest.mark.parametrize("case_id, text, line, fragments", CASES, ids=IDS)
def test_broken_spec_through_api(case_id, text, line, fragments, write_spec):
    path = write_spec(text, name=f"{case_id}.yaml")
    with pytest.raises(SpecError) as info:
        specbuild.validate(path)
    error = info.value
    matching = [p for p in error.problems if fragments[0] in str(p)]
    assert matching, str(error)
    assert matching[0].line == line and matching[0].file == path
    assert all(p.file == path for p in error.problems)


MANY = MLP_IN + """\
  - {name: fc1, type: Linear, out_feature: 10}
  - {type: rellu}
  - {name: fc2, type: Linear, out_features: "12", in: fc0}
outputs: fc3
train:
  loss: {type: CrossEntropyLos}
  epoch: 3
"""


def test_several_errors_are_all_reported(cli, write_spec):
    path = write_spec(MANY)
    result = cli("validate", path)
    assert result.rc == 1
    lines = result.lines()
    problems = [line for line in lines if line.startswith(path + ":")]
    expected = {
        "unknown argument 'out_feature'": 6,
        "unknown layer type 'rellu'": 7,
        "`out_features` for Linear must be an integer, not '12'": 8,
        "`in:` names 'fc0'": 8,
        "output 'fc3' is no layer": 9,
        "unknown loss type 'CrossEntropyLos'": 11,
        "unknown key 'epoch'": 12,
    }
    for fragment, line in expected.items():
        assert _line_with(problems, fragment).startswith(f"{path}:{line}:")
    # Linear without out_features is also reported (the typo left it missing), on the layer's line
    assert _line_with(problems, "missing required argument 'out_features'").startswith(f"{path}:6:5: ")
    # and nothing else: each problem line is one of those 8
    assert len(problems) == len(expected) + 1, problems
    assert all(sum(f in p for f in [*expected, "missing required argument"]) == 1 for p in problems), problems
    assert lines[-1] == f"{len(problems)} problems found"
    # sorted by position
    positions = [tuple(int(n) for n in p[len(path) + 1:].split(":", 2)[:2]) for p in problems]
    assert positions == sorted(positions)


def test_several_files_each_reported_and_exit_1(cli, write_spec):
    good = write_spec(MLP_IN + "  - {type: Linear, out_features: 10}\n")
    bad1 = write_spec(MLP_IN + "  - {type: rellu}\n")
    bad2 = write_spec(MLP_IN + "  - {type: Linear, out_feature: 10}\n")
    result = cli("validate", bad1, good, bad2)
    assert result.rc == 1
    assert f"{good}: ok" in result.out
    assert f"{bad1}:6:" in result.err and f"{bad2}:6:" in result.err


def test_missing_file(cli, tmp_path):
    path = tmp_path / "nope.yaml"
    result = cli("validate", path)
    assert result.rc == 1 and f"{path}: no such file" in result.err


def test_directory_instead_of_file(cli, tmp_path):
    result = cli("validate", tmp_path)
    assert result.rc == 1 and result.err == f"{tmp_path}: is a directory, not a spec file\n"


def test_broken_json_spec(cli, write_spec):
    path = write_spec('{"specbuild": 1,\n "name": "m",\n "inputs": {"x": [4]}\n "layers": []}\n', suffix=".json")
    result = cli("validate", path)
    assert result.rc == 1
    assert result.err.startswith(f"{path}:4:") and "invalid JSON" in result.err


def test_json_spec_problem_has_line(cli, write_spec):
    path = write_spec('{"specbuild": 1,\n "name": "m",\n "inputs": {"x": [4]},\n'
                      ' "layers": [{"type": "rellu"}]}\n', suffix=".json")
    result = cli("validate", path)
    assert result.rc == 1
    assert _line_with(result.lines(), "unknown layer type 'rellu'").startswith(f"{path}:4:")


def test_duplicate_name_reports_no_spurious_cycle(cli, write_spec):
    path = write_spec(MLP_IN + "  - {name: fc, type: Linear, out_features: 10}\n"
                      "  - {name: fc, type: Linear, out_features: 10}\n")
    result = cli("validate", path)
    assert result.rc == 1 and "duplicate name" in result.err
    assert "cycle" not in result.err
