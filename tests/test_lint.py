"""The linter's warnings: specs that are valid but probably wrong.

Each warning comes out of `validate` as a Problem with severity "warning" (no exception),
and `specbuild validate` prints it with `warning:` on stderr, says `ok (1 warning)` on
stdout and exits 0.  Each case also has its twin without the mistake, which is silent.
"""
from __future__ import annotations

import pytest
from cli_runner import line_of, write_text

from specbuild.spec.validate import validate

HEAD = "specbuild: 1\nname: m\n"
MLP = HEAD + "inputs:\n  x: [20]\nlayers:\n  - {name: fc, type: Linear, out_features: 3}\n"


def _only_warning(spec_file):
    warnings = validate(spec_file)
    assert len(warnings) == 1, [str(w) for w in warnings]
    warning = warnings[0]
    assert warning.severity == "warning"
    return warning


def _assert_cli_warns(run, spec_file, line, *fragments):
    rc, out, err = run("validate", spec_file)
    assert rc == 0
    assert out.strip() == f"{spec_file}: ok (1 warning)"
    assert err.count("warning:") == 1
    assert err.startswith(f"{spec_file}:{line}:") and ": warning: " in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def _assert_silent(run, spec_file):
    assert validate(spec_file) == []
    rc, out, err = run("validate", spec_file)
    assert (rc, out.strip(), err) == (0, f"{spec_file}: ok", "")


# --- a loss that applies softmax/sigmoid again ---------------------------------------------

# (id, activation layer, loss line, fragments of the message)
DOUBLE = [
    ("ce-on-softmax", "  - {name: probs, type: softmax, dim: 1}\n", "  loss: {type: CrossEntropyLoss}\n",
     ["CrossEntropyLoss applies log_softmax itself", "reads 'probs', the output of softmax"]),
    ("ce-on-Softmax-module", "  - {name: probs, type: Softmax, dim: 1}\n", "  loss: {type: CrossEntropyLoss, on: probs}\n",
     ["CrossEntropyLoss applies log_softmax itself", "the output of Softmax"]),
    ("ce-on-log-softmax", "  - {name: probs, type: log_softmax, dim: 1}\n", "  loss: {type: CrossEntropyLoss}\n",
     ["CrossEntropyLoss applies log_softmax itself", "the output of log_softmax"]),
    ("bce-with-logits-on-sigmoid", "  - {name: p, type: sigmoid}\n", "  loss: {type: BCEWithLogitsLoss}\n",
     ["BCEWithLogitsLoss applies sigmoid itself", "reads 'p', the output of sigmoid"]),
    ("bce-with-logits-on-Sigmoid", "  - {name: p, type: Sigmoid}\n", "  loss: {type: BCEWithLogitsLoss, on: p}\n",
     ["BCEWithLogitsLoss applies sigmoid itself", "the output of Sigmoid"]),
    ("nll-on-softmax", "  - {name: p, type: softmax, dim: 1}\n", "  loss: {type: NLLLoss}\n",
     ["NLLLoss", "expects log-probabilities", "reads 'p', the output of softmax"]),
]


@pytest.mark.parametrize("case_id, activation, loss, fragments", DOUBLE, ids=[c[0] for c in DOUBLE])
def test_loss_on_an_already_activated_output_warns(case_id, activation, loss, fragments, tmp_path, run):
    text = MLP + activation + "train:\n" + loss
    spec_file = write_text(tmp_path, text)
    warning = _only_warning(spec_file)
    assert (warning.file, warning.line, warning.path) == (spec_file, line_of(text, "loss:"), "train.loss")
    for fragment in fragments:
        assert fragment in warning.message, (fragment, warning.message)
    assert warning.hint == "train on the raw scores: set the loss's `on: fc`"     # names the logits
    _assert_cli_warns(run, spec_file, warning.line, *fragments, "`on: fc`")


# The same models with the loss on the logits, or a loss that expects what it gets.
SILENT = [
    ("ce-on-logits", "  - {name: probs, type: softmax, dim: 1}\noutputs: probs\n",
     "  loss: {type: CrossEntropyLoss, on: fc}\n"),
    ("ce-on-plain-output", "", "  loss: {type: CrossEntropyLoss}\n"),
    ("bce-with-logits-on-logits", "  - {name: p, type: sigmoid}\n", "  loss: {type: BCEWithLogitsLoss, on: fc}\n"),
    ("bce-on-sigmoid", "  - {name: p, type: sigmoid}\n", "  loss: {type: BCELoss}\n"),
    ("nll-on-log-softmax", "  - {name: p, type: log_softmax, dim: 1}\n", "  loss: {type: NLLLoss}\n"),
    ("mse-on-softmax", "  - {name: p, type: softmax, dim: 1}\n", "  loss: {type: MSELoss}\n"),
]


@pytest.mark.parametrize("case_id, activation, loss", SILENT, ids=[c[0] for c in SILENT])
def test_loss_on_the_logits_is_silent(case_id, activation, loss, tmp_path, run):
    _assert_silent(run, write_text(tmp_path, MLP + activation + "train:\n" + loss))


def test_each_loss_of_several_is_checked(tmp_path, run):
    text = MLP + """\
  - {name: p, type: softmax, dim: 1}
  - {name: q, type: sigmoid, in: fc}
outputs: [p, q]
train:
  loss:
    - {type: CrossEntropyLoss, on: fc}
    - {type: BCEWithLogitsLoss, on: q}
"""
    spec_file = write_text(tmp_path, text)
    warning = _only_warning(spec_file)
    assert warning.path == "train.loss[1]" and warning.line == line_of(text, "BCEWithLogitsLoss")
    assert "reads 'q', the output of sigmoid" in warning.message


def test_shipped_classifiers_put_the_loss_on_the_logits(tmp_path):
    """cnn.yaml trains on fc2 and returns softmax probabilities; dropping its `on:` brings
    back the guide's double softmax, which the linter flags."""
    from pathlib import Path
    text = (Path(__file__).resolve().parent.parent / "specs" / "cnn.yaml").read_text()
    assert validate(write_text(tmp_path, text, "cnn.yaml")) == []
    broken = text.replace("loss: {type: CrossEntropyLoss, on: fc2}", "loss: {type: CrossEntropyLoss}")
    assert broken != text
    warning = _only_warning(write_text(tmp_path, broken, "cnn_broken.yaml"))
    assert "reads 'probs', the output of softmax" in warning.message and "`on: fc2`" in warning.hint


# --- a mean over dim 1 after a sequence layer whose batch_first is false --------------------

SEQUENCE = [
    ("transformer-encoder", """\
inputs:
  x: [10, 16]
layers:
  - name: enc
    type: TransformerEncoder
    num_layers: 1
    encoder_layer: {type: TransformerEncoderLayer, nhead: 2, dim_feedforward: 8__BF__}
  - {name: pooled, type: mean, dim: 1}
""", "enc", "TransformerEncoder", "mean"),
    ("multihead-attention-through-item", """\
inputs:
  x: [10, 16]
layers:
  - {name: att, type: MultiheadAttention, num_heads: 2, in: [x, x, x]__BF__}
  - {name: out, type: item, index: 0}
  - {name: pooled, type: mean, dim: 1}
""", "att", "MultiheadAttention", "mean"),
    ("lstm-through-item-and-slice", """\
inputs:
  x: [10, 16]
layers:
  - {name: lstm, type: LSTM, hidden_size: 4__BF__}
  - {name: out, type: item, index: 0}
  - {name: first_features, type: slice, at: "[:, :, :2]"}
  - {name: pooled, type: sum, dim: 1}
""", "lstm", "LSTM", "sum"),
    ("gru-in-a-block", """\
blocks:
  Pool:
    layers:
      - {name: gru, type: GRU, hidden_size: 4__BF__}
      - {name: out, type: item, index: 0}
      - {name: pooled, type: amax, dim: 1}
inputs:
  x: [10, 16]
layers:
  - {name: pool, type: Pool}
""", "gru", "GRU", "amax"),
]


@pytest.mark.parametrize("case_id, body, source, source_type, reduction", SEQUENCE, ids=[c[0] for c in SEQUENCE])
def test_reduction_over_the_batch_axis_warns(case_id, body, source, source_type, reduction, tmp_path, run):
    text = HEAD + body.replace("__BF__", "")
    spec_file = write_text(tmp_path, text)
    warning = _only_warning(spec_file)
    assert warning.node == "pooled" and warning.path.endswith(".dim")
    assert warning.line == line_of(text, "name: pooled")
    assert f"{reduction} over dim 1 after {source!r} ({source_type}) whose batch_first is false" in warning.message
    assert "mixes samples" in warning.message and f"set `batch_first: true` on {source!r}" in warning.hint
    _assert_cli_warns(run, spec_file, warning.line, f"after {source!r}", "mixes samples")


@pytest.mark.parametrize("case_id, body, source, source_type, reduction", SEQUENCE, ids=[c[0] for c in SEQUENCE])
def test_batch_first_true_is_silent(case_id, body, source, source_type, reduction, tmp_path, run):
    _assert_silent(run, write_text(tmp_path, HEAD + body.replace("__BF__", ", batch_first: true")))


def _only_the_layout_warning(spec_file, text, source):
    """The one warning left: the sequence layer reads specbuild's batch-first input as sequence-first."""
    warning = _only_warning(spec_file)
    assert warning.node == source and warning.line == line_of(text, f"name: {source}")
    assert "batch_first false, so it reads dim 0 of its input as the sequence" in warning.message
    assert "mixes samples" not in warning.message


@pytest.mark.parametrize("case_id, body, source, source_type, reduction", SEQUENCE, ids=[c[0] for c in SEQUENCE])
def test_reducing_over_dim_0_is_not_the_batch_axis_warning(case_id, body, source, source_type, reduction, tmp_path):
    text = HEAD + body.replace("__BF__", "").replace(f"type: {reduction}, dim: 1", f"type: {reduction}, dim: 0")
    _only_the_layout_warning(write_text(tmp_path, text), text, source)


def test_slice_that_drops_the_sequence_dim_is_not_the_batch_axis_warning(tmp_path):
    """`out[-1]` (the last step of a sequence-first output) leaves [batch, hidden]: a mean
    over dim 1 there averages features, not samples."""
    body = SEQUENCE[2][1].replace("__BF__", "")
    for at in ('"[-1]"', '"[0]"', '"[-1, :, :]"', '"[:, 0]"'):
        text = HEAD + body.replace('"[:, :, :2]"', at)
        _only_the_layout_warning(write_text(tmp_path, text), text, "lstm")


def test_a_sequence_first_layer_after_a_transpose_is_silent(tmp_path, run):
    text = HEAD + """\
inputs:
  x: [10, 16]
layers:
  - {name: seq_first, type: transpose, dim0: 0, dim1: 1}
  - {name: lstm, type: LSTM, hidden_size: 4}
  - {name: out, type: item, index: 0}
  - {name: last, type: slice, at: "[-1]"}
"""
    _assert_silent(run, write_text(tmp_path, text))


def test_shipped_attention_and_transformer_with_batch_first_false_warn(tmp_path):
    """The guide's own mistake: attention.yaml and transformer.yaml set batch_first: true and
    validate silently; set it back to the guide's false and the linter points at the mean."""
    from pathlib import Path
    specs = Path(__file__).resolve().parent.parent / "specs"
    for name, source in (("attention", "'attention' (MultiheadAttention)"),
                         ("transformer", "'transformer' (TransformerEncoder)")):
        text = (specs / f"{name}.yaml").read_text()
        assert validate(write_text(tmp_path, text, f"{name}.yaml")) == []
        guide = text.replace("batch_first: true", "batch_first: false")
        assert guide != text
        warning = _only_warning(write_text(tmp_path, guide, f"{name}_guide.yaml"))
        assert warning.node == "pooled" and warning.line == line_of(guide, "name: pooled")
        assert f"mean over dim 1 after {source}" in warning.message


# --- unreachable layers ---------------------------------------------------------------------

def test_layer_no_output_uses_warns(tmp_path, run):
    text = MLP + "  - {name: extra, type: Linear, out_features: 2, in: x}\n  - {name: out, type: relu, in: fc}\n"
    spec_file = write_text(tmp_path, text)
    warning = _only_warning(spec_file)
    assert (warning.node, warning.path, warning.line) == ("extra", "layers[1]", line_of(text, "name: extra"))
    assert warning.message == "layer is not used by any output"
    _assert_cli_warns(run, spec_file, warning.line, "warning: layers[1] (extra): layer is not used by any output")


def test_unused_chain_warns_for_each_layer_and_listing_it_as_output_silences(tmp_path, run):
    body = MLP + "  - {name: side1, type: Linear, out_features: 2, in: x}\n  - {name: side2, type: tanh}\n"
    warnings = validate(write_text(tmp_path, body + "outputs: fc\n"))
    assert sorted(w.node for w in warnings) == ["side1", "side2"]
    assert all(w.severity == "warning" and "not used by any output" in w.message for w in warnings)
    _assert_silent(run, write_text(tmp_path, body + "outputs: [fc, side2]\n", "both.yaml"))


def test_unused_layer_inside_a_block_warns(tmp_path):
    text = HEAD + """\
blocks:
  B:
    layers:
      - {name: used, type: Linear, out_features: 4}
      - {name: spare, type: Linear, out_features: 4, in: x}
    outputs: used
inputs:
  x: [8]
layers:
  - {name: b, type: B}
"""
    warning = _only_warning(write_text(tmp_path, text))
    assert (warning.node, warning.line) == ("spare", line_of(text, "name: spare"))
    assert warning.path == "blocks.B.layers[1]"


def test_one_warning_does_not_hide_the_others_nor_shape_errors(tmp_path):
    """An unused layer's warning used to stop validation before shape inference and the
    linter: the spec's other warnings and its shape errors went unreported, and
    build_model then failed with a KeyError."""
    import torch

    from specbuild import SpecError
    from specbuild.compiler.compile import build_model
    text = MLP + "  - {name: extra, type: Linear, out_features: 2, in: x}\n  - {name: out, type: softmax, dim: 1, in: fc}\n" \
        "train:\n  loss: {type: CrossEntropyLoss}\n"
    spec_file = write_text(tmp_path, text)
    assert sorted(w.message.split(" ")[0] for w in validate(spec_file)) == ["CrossEntropyLoss", "layer"]
    assert build_model(spec_file)(torch.zeros(2, 20)).shape == (2, 3)     # a warning is advice

    with pytest.raises(SpecError) as caught:
        validate(write_text(tmp_path, text.replace("out_features: 3}", "in_features: 7, out_features: 3}"), "bad.yaml"))
    assert "in_features is 7 but its input has 20 features" in caught.value.message
    assert [p.severity for p in caught.value.problems] == ["error", "warning"]


IN_PLACE = """\
specbuild: 1
name: m
inputs:
  x: [4]
layers:
  - {name: fc, type: Linear, out_features: 4}
  - {name: act, type: ReLU, inplace: true, in: SOURCE}
  - {name: sum, type: add, in: [fc, act]}
outputs: OUTPUTS
"""


def test_in_place_on_a_tensor_read_elsewhere_warns(tmp_path, run):
    text = IN_PLACE.replace("SOURCE", "fc").replace("OUTPUTS", "sum")
    _assert_cli_warns(run, write_text(tmp_path, text), line_of(text, "inplace"),
                      "ReLU 'act' overwrites its input 'fc' in place, and 'sum' reads it too")


def test_in_place_on_the_callers_tensor_warns(tmp_path, run):
    text = HEAD + "inputs:\n  x: [4]\nlayers:\n  - {name: act, type: ReLU, inplace: true}\n"
    _assert_cli_warns(run, write_text(tmp_path, text), line_of(text, "inplace"),
                      "ReLU 'act' overwrites its input 'x' in place, and it is the caller's tensor")


def test_in_place_where_nothing_else_reads_is_silent(tmp_path, run):
    text = IN_PLACE.replace("SOURCE", "fc").replace("in: [fc, act]", "in: [act, act]").replace("OUTPUTS", "sum")
    _assert_silent(run, write_text(tmp_path, text))
