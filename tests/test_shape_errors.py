"""Shape inference through `specbuild validate`, one spec file per case.

The first half checks that sizes a spec omits are inferred for every layer family, read
back from `check(...).shapes[network][node]` (`.args` holds the filled-in arguments,
`.output` the output shape).  The second half writes specs whose shapes do not fit and
checks each error end to end: the message (both shapes and the argument), the upstream
node it names, and that `error.file`/`error.line` and the CLI's `file:LINE:` point at the
offending line.  The per-rule arithmetic itself is tested in test_shapes.py and against
torch in test_shape_rules_vs_torch.py; here the subject is the spec-level plumbing.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from cli_runner import line_of, write_text

from specbuild import SpecError
from specbuild.spec.validate import check

REPO = Path(__file__).resolve().parent.parent
HEAD = "specbuild: 1\nname: m\n"
N = "N"


# --- omitted sizes are inferred -----------------------------------------------------------

# (id, spec body after HEAD, network-level checks {node: (expected args subset, output)})
INFERRED = [
    ("linear", "inputs:\n  x: [1, 28, 28]\nlayers:\n  - {type: flatten}\n"
     "  - {name: fc1, type: Linear, out_features: 32}\n  - {name: fc2, type: Linear, out_features: 10}\n",
     {"fc1": ({"in_features": 784, "out_features": 32}, (N, 32)),
      "fc2": ({"in_features": 32}, (N, 10))}),
    ("conv", "inputs:\n  x: [3, 32, 32]\n  s: [4, 50]\nlayers:\n"
     "  - {name: c2, type: Conv2d, out_channels: 8, kernel_size: 5, stride: 2, padding: 1, in: x}\n"
     "  - {name: c1, type: Conv1d, out_channels: 6, kernel_size: 3, dilation: 2, in: s}\n"
     "  - {name: c3, type: Conv2d, out_channels: 4, kernel_size: [3, 1], in: c2}\noutputs: [c3, c1]\n",
     {"c2": ({"in_channels": 3}, (N, 8, 15, 15)), "c1": ({"in_channels": 4}, (N, 6, 46)),
      "c3": ({"in_channels": 8}, (N, 4, 13, 15))}),
    ("conv_transpose", "inputs:\n  x: [16, 7, 7]\nlayers:\n"
     "  - {name: up, type: ConvTranspose2d, out_channels: 8, kernel_size: 4, stride: 2, padding: 1}\n"
     "  - {name: up2, type: ConvTranspose2d, out_channels: 1, kernel_size: 2, stride: 2, output_padding: 1}\n",
     {"up": ({"in_channels": 16}, (N, 8, 14, 14)), "up2": ({"in_channels": 8}, (N, 1, 29, 29))}),
    ("pooling", "inputs:\n  x: [3, 28, 28]\n  s: [2, 9]\nlayers:\n"
     "  - {name: mp, type: MaxPool2d, kernel_size: 2, stride: 2, in: x}\n"
     "  - {name: ap, type: AvgPool2d, kernel_size: 3, stride: 1, padding: 1}\n"
     "  - {name: ad, type: AdaptiveAvgPool2d, output_size: [1, 1]}\n"
     "  - {name: p1, type: MaxPool1d, kernel_size: 3, in: s}\noutputs: [ad, p1]\n",
     {"mp": ({}, (N, 3, 14, 14)), "ap": ({}, (N, 3, 14, 14)), "ad": ({}, (N, 3, 1, 1)),
      "p1": ({}, (N, 2, 3))}),
    ("norms", "inputs:\n  x: [3, 8, 8]\nlayers:\n"
     "  - {name: conv, type: Conv2d, out_channels: 12, kernel_size: 3, padding: 1}\n"
     "  - {name: bn, type: BatchNorm2d}\n  - {name: inorm, type: InstanceNorm2d, affine: true}\n"
     "  - {name: gn, type: GroupNorm, num_groups: 3}\n  - {name: ln, type: LayerNorm}\n"
     "  - {type: flatten}\n  - {name: fc, type: Linear, out_features: 5}\n  - {name: bn1, type: BatchNorm1d}\n",
     {"bn": ({"num_features": 12}, (N, 12, 8, 8)), "inorm": ({"num_features": 12}, (N, 12, 8, 8)),
      "gn": ({"num_channels": 12, "num_groups": 3}, (N, 12, 8, 8)),
      "ln": ({"normalized_shape": 8}, (N, 12, 8, 8)),
      "fc": ({"in_features": 768}, (N, 5)), "bn1": ({"num_features": 5}, (N, 5))}),
    ("recurrent", "inputs:\n  x: [20, 3]\nlayers:\n"
     "  - {name: rnn, type: RNN, hidden_size: 7, batch_first: true}\n  - {name: r0, type: item, index: 0}\n"
     "  - {name: lstm, type: LSTM, hidden_size: 5, num_layers: 2, batch_first: true, bidirectional: true}\n"
     "  - {name: l0, type: item, index: 0}\n  - {name: gru, type: GRU, hidden_size: 4, batch_first: true}\n"
     "  - {name: g0, type: item, index: 0}\n  - {name: last, type: slice, at: '[:, -1, :]'}\n"
     "  - {name: fc, type: Linear, out_features: 1}\n",
     {"rnn": ({"input_size": 3}, [(N, 20, 7), (1, N, 7)]), "r0": ({}, (N, 20, 7)),
      "lstm": ({"input_size": 7}, [(N, 20, 10), [(4, N, 5), (4, N, 5)]]),
      "l0": ({}, (N, 20, 10)), "gru": ({"input_size": 10}, [(N, 20, 4), (1, N, 4)]),
      "last": ({}, (N, 4)), "fc": ({"in_features": 4}, (N, 1))}),
    ("attention", "inputs:\n  q: [6, 32]\n  kv: [9, 32]\nlayers:\n"
     "  - {name: att, type: MultiheadAttention, num_heads: 4, batch_first: true, in: [q, kv, kv]}\n"
     "  - {name: out, type: item, index: 0}\n  - {name: w, type: item, index: 1, in: att}\n"
     "outputs: [out, w]\n",
     {"att": ({"embed_dim": 32}, [(N, 6, 32), (N, 6, 9)]), "out": ({}, (N, 6, 32)), "w": ({}, (N, 6, 9))}),
    ("transformer", "inputs:\n  x: [10, 24]\nlayers:\n  - name: enc\n    type: TransformerEncoder\n"
     "    num_layers: 2\n    encoder_layer: {type: TransformerEncoderLayer, nhead: 3, dim_feedforward: 16,"
     " batch_first: true}\n  - {name: pooled, type: mean, dim: 1}\n",
     {"enc": ({"num_layers": 2}, (N, 10, 24)), "pooled": ({}, (N, 24))}),
    ("embedding", "inputs:\n  tok: {shape: [12], dtype: long}\nlayers:\n"
     "  - {name: emb, type: Embedding, num_embeddings: 100, embedding_dim: 16}\n"
     "  - {name: flat, type: flatten}\n  - {name: fc, type: Linear, out_features: 2}\n",
     {"emb": ({}, (N, 12, 16)), "flat": ({}, (N, 192)), "fc": ({"in_features": 192}, (N, 2))}),
    ("upsample", "inputs:\n  x: [2, 5, 7]\nlayers:\n"
     "  - {name: up, type: Upsample, scale_factor: 2, mode: nearest}\n"
     "  - {name: up2, type: Upsample, size: [3, 4], mode: bilinear}\n  - {name: conv, type: Conv2d, out_channels: 1, kernel_size: 1}\n",
     {"up": ({}, (N, 2, 10, 14)), "up2": ({}, (N, 2, 3, 4)), "conv": ({"in_channels": 2}, (N, 1, 3, 4))}),
    ("tensor_functions", "inputs:\n  a: [2, 3, 4]\n  b: [5, 3, 4]\nlayers:\n"
     "  - {name: j, type: cat, dim: 1, in: [a, b]}\n  - {name: f, type: flatten, start_dim: 2}\n"
     "  - {name: r, type: reshape, shape: [-1, 4, 3, 7]}\n  - {name: ch, type: chunk, chunks: 2, dim: 2}\n"
     "  - {name: second, type: item, index: 1}\n  - {name: s, type: slice, at: '[:, 0, ..., None]'}\n"
     "  - {name: fl, type: flatten}\n  - {name: fc, type: Linear, out_features: 3}\n",
     {"j": ({}, (N, 7, 3, 4)), "f": ({}, (N, 7, 12)), "r": ({}, (N, 4, 3, 7)),
      "ch": ({}, [(N, 4, 2, 7), (N, 4, 1, 7)]), "second": ({}, (N, 4, 1, 7)), "s": ({}, (N, 1, 7, 1)),
      "fl": ({}, (N, 7)), "fc": ({"in_features": 7}, (N, 3))}),
    ("weight_norm", "inputs:\n  x: [40]\nlayers:\n"
     "  - {name: fc1, type: weight_norm, module: {type: Linear, out_features: 8}}\n"
     "  - {name: c, type: unsqueeze, dim: 1}\n"
     "  - {name: conv, type: weight_norm, module: {type: Conv1d, out_channels: 2, kernel_size: 3}, dim: 0}\n",
     {"fc1": ({"module": {"type": "Linear", "out_features": 8, "in_features": 40}}, (N, 8)),
      "conv": ({"module": {"type": "Conv1d", "out_channels": 2, "kernel_size": 3, "in_channels": 1}}, (N, 2, 6))}),
    ("sequential", "inputs:\n  x: [30]\nlayers:\n  - name: body\n    type: Sequential\n    layers:\n"
     "      - {type: Linear, out_features: 16}\n      - {type: ReLU}\n      - {type: LayerNorm}\n"
     "      - {type: Linear, out_features: 2}\n",
     {"body": ({"layers": [{"type": "Linear", "out_features": 16, "in_features": 30}, {"type": "ReLU"},
                           {"type": "LayerNorm", "normalized_shape": 16},
                           {"type": "Linear", "out_features": 2, "in_features": 16}]}, (N, 2))}),
]


@pytest.mark.parametrize("case_id, body, expected", INFERRED, ids=[c[0] for c in INFERRED])
def test_omitted_sizes_are_inferred(case_id, body, expected, tmp_path, run):
    path = write_text(tmp_path, HEAD + body)
    shapes = check(path).shapes["m"]
    for node, (args, output) in expected.items():
        got = shapes[node]
        assert got.output == output, (node, got.output)
        for key, value in args.items():
            assert got.args[key] == value, (node, key, got.args)
    rc, out, err = run("validate", path)
    assert rc == 0 and out.strip() == f"{path}: ok" and err == ""


def test_blocks_repeat_and_share_are_inferred_per_use(tmp_path):
    """A block is inferred with the shape it is called with, each time; `repeat:` chains
    the rule (each copy has its own in_features); `share:` reuses the shared arguments."""
    path = write_text(tmp_path, HEAD + """\
blocks:
  Down:
    layers:
      - {name: conv, type: Conv2d, out_channels: 8, kernel_size: 3, padding: 1}
      - {name: pool, type: MaxPool2d, kernel_size: 2}
inputs:
  x: [3, 32, 32]
layers:
  - {name: d1, type: Down}
  - {name: d2, type: Down}
  - {name: flat, type: flatten}
  - {name: hidden, type: Linear, out_features: 64, repeat: 3}
  - {name: act, type: tanh}
  - {name: again, share: hidden, in: flat}
  - {name: both, type: add, in: [act, again]}
""")
    shapes = check(path).shapes["m"]
    assert shapes["d1"].output == (N, 8, 16, 16) and shapes["d2"].output == (N, 8, 8, 8)
    assert shapes["d1"].inner["conv"].args["in_channels"] == 3        # first use: 3 channels in
    assert shapes["d2"].inner["conv"].args["in_channels"] == 8        # second use: 8 channels in
    assert shapes["d1"].params == 3 * 8 * 9 + 8 and shapes["d2"].params == 8 * 8 * 9 + 8
    hidden = shapes["hidden"]
    assert [hidden.inner[str(i)].args["in_features"] for i in range(3)] == [512, 64, 64]
    assert hidden.output == (N, 64) and hidden.params == (512 * 64 + 64) + 2 * (64 * 64 + 64)
    again = shapes["again"]                     # all three copies again, the same weights: none new
    assert again.output == (N, 64) and again.params == 0
    assert [again.inner[str(i)].args["in_features"] for i in range(3)] == [512, 64, 64]


def test_block_with_several_inputs_and_outputs(tmp_path):
    path = write_text(tmp_path, HEAD + """\
blocks:
  Pair:
    inputs: [a, b]
    layers:
      - {name: pa, type: Linear, out_features: 6, in: a}
      - {name: pb, type: Linear, out_features: 6, in: b}
      - {name: s, type: add, in: [pa, pb]}
    outputs: [s, pa]
inputs:
  u: [3]
  v: [5]
layers:
  - {name: pair, type: Pair, in: [u, v]}
  - {name: first, type: item, index: 0}
""")
    shapes = check(path).shapes["m"]
    assert shapes["pair"].output == [(N, 6), (N, 6)]
    assert shapes["pair"].inner["pa"].args["in_features"] == 3
    assert shapes["pair"].inner["pb"].args["in_features"] == 5
    assert shapes["first"].output == (N, 6)


# --- mismatches: message, upstream node, file and line ----------------------------------------

# (id, spec body after HEAD, fragment of the offending line, node, path suffix, upstream node,
#  fragments of the message).  The upstream node must be named as "(input: <name> gives ...".
MISMATCHES = [
    ("linear-784-after-conv-stack", """\
inputs:
  x: [1, 28, 28]
layers:
  - {name: conv1, type: Conv2d, out_channels: 16, kernel_size: 3, padding: 1}
  - {type: relu}
  - {name: conv2, type: Conv2d, out_channels: 32, kernel_size: 3, padding: 1}
  - {name: pool, type: MaxPool2d, kernel_size: 2}
  - {name: flat, type: flatten}
  - name: fc1
    type: Linear
    in_features: 784
    out_features: 10
""", "in_features: 784", "fc1", "layers[5].in_features", "flat",
     ["in_features is 784", "has 6272 features", "[N, 6272]", "set it to 6272"]),
    ("conv-kernel-larger-than-input", """\
inputs:
  x: [3, 4, 4]
layers:
  - {name: c1, type: Conv2d, out_channels: 8, kernel_size: 3}
  - {name: c2, type: Conv2d, out_channels: 8, kernel_size: 3}
""", "name: c2", "c2", "layers[1].kernel_size", "c1",
     ["kernel_size is too large for its input", "[N, 8, 2, 2]", "kernel 3"]),
    ("pool-kernel-larger-than-input", """\
inputs:
  x: [3, 8, 8]
layers:
  - {name: conv, type: Conv2d, out_channels: 16, kernel_size: 3}
  - {name: pool, type: MaxPool2d, kernel_size: 8}
""", "name: pool", "pool", "layers[1].kernel_size", "conv",
     ["MaxPool2d: kernel_size is too large", "[N, 16, 6, 6]", "kernel 8"]),
    ("groupnorm-indivisible", """\
inputs:
  x: [3, 8, 8]
layers:
  - {name: conv, type: Conv2d, out_channels: 10, kernel_size: 3}
  - name: gn
    type: GroupNorm
    num_groups: 4
""", "num_groups: 4", "gn", "layers[1].num_groups", "conv",
     ["num_channels 10 is not divisible by num_groups 4", "[N, 10, 6, 6]"]),
    ("layernorm-normalized-shape", """\
inputs:
  x: [5, 20]
layers:
  - {name: fc, type: Linear, out_features: 64}
  - name: ln
    type: LayerNorm
    normalized_shape: [5, 32]
""", "normalized_shape: [5, 32]", "ln", "layers[1].normalized_shape", "fc",
     ["normalized_shape is [5, 32]", "[N, 5, 64]", "ends in [5, 64]"]),
    ("batchnorm-num-features", """\
inputs:
  x: [3, 8, 8]
layers:
  - {name: conv, type: Conv2d, out_channels: 16, kernel_size: 3}
  - {name: bn, type: BatchNorm2d,
     num_features: 32}
""", "num_features: 32", "bn", "layers[1].num_features", "conv",
     ["num_features is 32", "16 channels", "[N, 16, 6, 6]", "set it to 16"]),
    ("instancenorm-num-features", """\
inputs:
  x: [3, 8, 8]
layers:
  - {name: conv, type: Conv2d, out_channels: 16, kernel_size: 3}
  - {name: inorm, type: InstanceNorm2d, num_features: 8}
""", "name: inorm", "inorm", "layers[1].num_features", "conv",
     ["num_features is 8", "16 channels", "[N, 16, 6, 6]"]),
    ("conv-transpose-in-channels", """\
inputs:
  x: [3, 8, 8]
layers:
  - {name: conv, type: Conv2d, out_channels: 16, kernel_size: 3}
  - name: up
    type: ConvTranspose2d
    in_channels: 3
    out_channels: 8
    kernel_size: 2
""", "in_channels: 3", "up", "layers[1].in_channels", "conv",
     ["in_channels is 3", "16 channels", "[N, 16, 6, 6]"]),
    ("lstm-input-size", """\
inputs:
  x: [12, 8]
layers:
  - {name: proj, type: Linear, out_features: 16}
  - name: lstm
    type: LSTM
    hidden_size: 4
    input_size: 8
    batch_first: true
""", "input_size: 8", "lstm", "layers[1].input_size", "proj",
     ["input_size is 8", "16 features", "[N, 12, 16]", "set it to 16"]),
    ("gru-input-size", """\
inputs:
  x: [5, 8]
layers:
  - {name: fc, type: Linear, out_features: 6}
  - {name: g, type: GRU, input_size: 5, hidden_size: 3}
""", "name: g,", "g", "layers[1].input_size", "fc",
     ["input_size is 5", "6 features", "[N, 5, 6]"]),
    ("mha-embed-dim-not-divisible", """\
inputs:
  x: [12, 30]
layers:
  - name: att
    type: MultiheadAttention
    embed_dim: 30
    num_heads: 8
    batch_first: true
    in: [x, x, x]
""", "num_heads: 8", "att", "layers[0].num_heads", "x",
     ["embed_dim 30 is not divisible by num_heads 8", "[N, 12, 30]"]),
    ("transformer-d-model", """\
inputs:
  x: [10, 32]
layers:
  - name: enc
    type: TransformerEncoder
    num_layers: 2
    encoder_layer:
      type: TransformerEncoderLayer
      d_model: 64
      nhead: 4
""", "d_model: 64", "enc", "layers[0].encoder_layer.d_model", "x",
     ["d_model is 64", "32 features", "[N, 10, 32]"]),
    ("cat-mismatched-dims", """\
inputs:
  a: [3, 8, 8]
  b: [3, 6, 6]
layers:
  - {name: ca, type: Conv2d, out_channels: 4, kernel_size: 1, in: a}
  - {name: cb, type: Conv2d, out_channels: 4, kernel_size: 1, in: b}
  - {name: joined, type: cat, dim: 1, in: [ca, cb]}
""", "name: joined", "joined", "layers[2].dim", "cb",
     ["cat along dim 1", "[N, 4, 6, 6]", "[N, 4, 8, 8]", "at dim 2", "ca gives [N, 4, 8, 8]"]),
    ("reshape-element-count", """\
inputs:
  x: [4, 5]
layers:
  - {name: fc, type: Linear, out_features: 6}
  - {name: r, type: reshape, shape: [7, 4, 7]}
""", "name: r,", "r", "layers[1].shape", "fc",
     ["reshape of [N, 4, 6] to [7, 4, 7]", "element counts differ", "N*24 vs 196"]),
    ("item-on-a-single-tensor", """\
inputs:
  x: [8]
layers:
  - {name: fc, type: Linear, out_features: 6}
  - {name: it, type: item, index: 0}
""", "name: it,", "it", "layers[1].index", "fc",
     ["item takes one value of a multi-value output", "single tensor [N, 6]"]),
    ("item-index-out-of-range", """\
inputs:
  x: [5, 8]
layers:
  - {name: rnn, type: GRU, hidden_size: 6, batch_first: true}
  - {name: it, type: item, index: 2}
""", "name: it,", "it", "layers[1].index", "rnn",
     ["item index 2 is out of range for 2 values", "([N, 5, 6], [1, N, 6])"]),
    ("slice-index-out-of-range", """\
inputs:
  x: [5, 8]
layers:
  - {name: fc, type: Linear, out_features: 6}
  - name: s
    type: slice
    at: "[:, 7]"
""", 'at: "[:, 7]"', "s", "layers[1].at", "fc",
     ["index 7 is out of range for dim 1 of size 5", "[N, 5, 6]"]),
    ("slice-too-many-indices", """\
inputs:
  x: [5, 8]
layers:
  - {name: fc, type: Linear, out_features: 6}
  - {name: s, type: slice, at: "[:, :, :, 0]"}
""", "name: s,", "s", "layers[1].at", "fc",
     ["has 4 indices", "[N, 5, 6] has only 3 dims"]),
    ("slice-bad-syntax", """\
inputs:
  x: [5, 8]
layers:
  - {name: fc, type: Linear, out_features: 6}
  - {name: s, type: slice, at: "[:, foo]"}
""", "name: s,", "s", "layers[1].at", "fc",
     ["bad index '[:, foo]'", "'foo' is not an int"]),
    ("shared-layer-wrong-input", """\
inputs:
  a: [8]
  b: [6]
layers:
  - {name: fc, type: Linear, out_features: 4, in: a}
  - {name: again, share: fc, in: b}
  - {name: s, type: add, in: [fc, again]}
""", "name: again", "again", "layers[1]", "b",
     ["in_features is 8", "6 features", "[N, 6]"]),
    ("share-of-a-repeated-layer", """\
inputs:
  x: [10]
layers:
  - {name: hidden, type: Linear, out_features: 16, repeat: 3}
  - {name: act, type: tanh}
  - {name: again, share: hidden}
""", "name: again", "again", "layers[2]", "act",
     ["in_features is 10", "16 features", "[N, 16]"]),
    ("repeat-copy-does-not-fit", """\
inputs:
  x: [30]
layers:
  - {name: h, type: Linear, in_features: 30, out_features: 10, repeat: 3}
""", "name: h,", "h", "layers[0].in_features", "h.0",
     ["in_features is 30", "10 features", "[N, 10]"]),
    ("weight-norm-inner-layer", """\
inputs:
  x: [30]
layers:
  - {name: fc, type: Linear, out_features: 10}
  - name: w
    type: weight_norm
    module:
      type: Linear
      in_features: 30
      out_features: 4
""", "in_features: 30", "w", "layers[1].module.in_features", "fc",
     ["weight_norm.module: in_features is 30", "10 features", "[N, 10]"]),
    ("sequential-inner-layer", """\
inputs:
  x: [30]
layers:
  - {name: fc, type: Linear, out_features: 10}
  - name: body
    type: Sequential
    layers:
      - {type: Linear, out_features: 4}
      - {type: ReLU}
      - {type: Linear, in_features: 5, out_features: 4}
""", "in_features: 5", "body", "layers[1].layers[2].in_features", "fc",
     ["Sequential.layers[2] (Linear): in_features is 5", "4 features", "[N, 4]"]),
    ("upsample-on-a-vector", """\
inputs:
  x: [30]
layers:
  - {name: fc, type: Linear, out_features: 10}
  - {name: up, type: Upsample, scale_factor: 2}
""", "name: up,", "up", "layers[1]", "fc",
     ["Upsample expects a 3-d or 4-d or 5-d input", "[N, 10] (2-d)"]),
    ("conv-after-flatten", """\
inputs:
  x: [1, 28, 28]
layers:
  - {name: flat, type: flatten}
  - {name: conv, type: Conv2d, out_channels: 4, kernel_size: 3}
""", "name: conv,", "conv", "layers[1]", "flat",
     ["Conv2d expects a 3-d or 4-d input", "[N, 784]"]),
]
assert len(MISMATCHES) >= 12 and len({c[0] for c in MISMATCHES}) == len(MISMATCHES)


@pytest.mark.parametrize("case_id, body, line_fragment, node, path, upstream, fragments", MISMATCHES,
                         ids=[c[0] for c in MISMATCHES])
def test_mismatch_names_shapes_upstream_file_and_line(case_id, body, line_fragment, node, path, upstream,
                                                      fragments, tmp_path, run):
    text = HEAD + body
    spec_file = write_text(tmp_path, text, f"{case_id}.yaml")
    line = line_of(text, line_fragment)

    with pytest.raises(SpecError) as caught:
        check(spec_file)
    error = caught.value
    errors = [p for p in error.problems if p.severity == "error"]
    assert len(errors) == 1, str(error)          # one mistake, one error: no cascade
    assert error.file == spec_file
    assert error.line == line, str(error)
    assert error.node == node
    assert error.path == path
    assert f"(input: {upstream} gives " in error.message or f", {upstream} gives " in error.message, error.message
    said = f"{error.message} — {error.hint}"
    for fragment in fragments:
        assert fragment in said, (fragment, said)

    rc, out, err = run("validate", spec_file)
    assert rc == 1 and out == ""
    first = err.splitlines()[0]
    assert first.startswith(f"{spec_file}:{line}:"), first
    assert f"{path} ({node}): " in first
    for fragment in fragments + [f"{upstream} gives "]:
        assert fragment in first, (fragment, first)


def test_block_that_does_not_fit_its_input(tmp_path, run):
    """The block's inner layer is reported where it is written, and the layer that calls the
    block where it is called, naming what feeds it."""
    text = HEAD + """\
blocks:
  Enc:
    layers:
      - {name: conv1, type: Conv2d, in_channels: 3, out_channels: 4, kernel_size: 3}
      - {name: act, type: relu}
inputs:
  x: [1, 28, 28]
layers:
  - {name: pre, type: tanh}
  - {name: enc, type: Enc}
"""
    spec_file = write_text(tmp_path, text)
    with pytest.raises(SpecError) as caught:
        check(spec_file)
    inner, caller = caught.value.problems
    assert (inner.file, inner.line, inner.node) == (spec_file, line_of(text, "name: conv1"), "conv1")
    assert inner.path == "blocks.Enc.layers[0].in_channels"
    assert "in_channels is 3 but its input has 1 channels (input shape [N, 1, 28, 28])" in inner.message
    assert (caller.file, caller.line, caller.node) == (spec_file, line_of(text, "name: enc"), "enc")
    assert "block 'Enc' does not fit its input [N, 1, 28, 28]" in caller.message
    assert "pre gives [N, 1, 28, 28]" in caller.message

    rc, _, err = run("validate", spec_file)
    lines = err.splitlines()
    assert rc == 1 and lines[-1] == "2 problems found"
    assert lines[0].startswith(f"{spec_file}:{inner.line}:") and "in_channels is 3" in lines[0]
    assert lines[1].startswith(f"{spec_file}:{caller.line}:") and "block 'Enc'" in lines[1]


def test_block_fits_one_use_but_not_another(tmp_path):
    """The same block, called twice: only the call whose input does not fit is an error."""
    text = HEAD + """\
blocks:
  Head:
    layers:
      - {name: fc, type: Linear, in_features: 8, out_features: 2}
inputs:
  a: [8]
  b: [9]
layers:
  - {name: ok, type: Head, in: a}
  - {name: bad, type: Head, in: b}
  - {name: both, type: cat, dim: 1, in: [ok, bad]}
"""
    with pytest.raises(SpecError) as caught:
        check(write_text(tmp_path, text))
    messages = [(p.node, p.line) for p in caught.value.problems]
    assert ("bad", line_of(text, "name: bad")) in messages
    assert all(node != "ok" for node, _ in messages)


def test_every_independent_mismatch_is_reported(tmp_path, run):
    text = HEAD + """\
inputs:
  a: [8]
  b: [3, 4, 4]
layers:
  - {name: fa, type: Linear, in_features: 7, out_features: 2, in: a}
  - {name: cb, type: Conv2d, in_channels: 2, out_channels: 2, kernel_size: 3, in: b}
  - {name: after, type: flatten, in: cb}
outputs: [fa, after]
"""
    spec_file = write_text(tmp_path, text)
    with pytest.raises(SpecError) as caught:
        check(spec_file)
    assert [(p.node, p.line) for p in caught.value.problems] == [
        ("fa", line_of(text, "name: fa")), ("cb", line_of(text, "name: cb"))]   # `after` is not blamed
    rc, _, err = run("validate", spec_file)
    assert rc == 1 and err.splitlines()[-1] == "2 problems found"


# --- `--set` can make a shipped spec inconsistent ------------------------------------------

def _shipped(name: str) -> tuple[str, str]:
    path = REPO / "specs" / f"{name}.yaml"
    return str(path), path.read_text(encoding="utf-8")


def test_set_input_dim_breaks_attention_at_its_line(run):
    spec_file, text = _shipped("attention")
    line = line_of(text, "name: attention, type: MultiheadAttention")
    with pytest.raises(SpecError) as caught:
        check(spec_file, overrides={"input_dim": 30})
    error = caught.value
    assert (error.file, error.line, error.node, error.path) == (spec_file, line, "attention", "layers[0].num_heads")
    assert "embed_dim 30 is not divisible by num_heads 8" in error.message
    assert "x gives [N, 16, 30]" in error.message

    rc, out, err = run("validate", spec_file, "--set", "input_dim=30")
    assert rc == 1 and out == ""
    assert err.startswith(f"{spec_file}:{line}:") and "embed_dim 30 is not divisible by num_heads 8" in err
    assert run("validate", spec_file, "--set", "input_dim=32")[0] == 0    # 32 = 4 x 8: fine again


def test_set_num_heads_points_at_the_nested_encoder_layer(run):
    spec_file, text = _shipped("transformer")
    line = line_of(text, "encoder_layer: {type: TransformerEncoderLayer")
    rc, _, err = run("validate", spec_file, "--set", "num_heads=7")
    assert rc == 1
    assert err.startswith(f"{spec_file}:{line}:"), err
    assert "layers[0].encoder_layer.nhead (transformer)" in err
    assert "d_model 512 is not divisible by nhead 7" in err


def test_set_a_param_that_makes_a_given_size_wrong(tmp_path, run):
    text = HEAD + """\
params: {width: 64}
inputs:
  x: [20]
layers:
  - {name: fc1, type: Linear, out_features: "${width}"}
  - {name: fc2, type: Linear, in_features: 64, out_features: 1}
"""
    spec_file = write_text(tmp_path, text)
    assert run("validate", spec_file)[0] == 0
    rc, _, err = run("validate", spec_file, "--set", "width=48")
    assert rc == 1
    assert err.startswith(f"{spec_file}:{line_of(text, 'name: fc2')}:")
    assert "in_features is 64 but its input has 48 features" in err and "fc1 gives [N, 48]" in err


def test_json_spec_errors_have_lines_too(tmp_path, run):
    text = """{
  "specbuild": 1,
  "name": "m",
  "inputs": {"x": [12]},
  "layers": [
    {"name": "fc1", "type": "Linear", "out_features": 5},
    {"name": "fc2", "type": "Linear", "in_features": 6, "out_features": 1}
  ]
}
"""
    spec_file = write_text(tmp_path, text, "spec.json")
    with pytest.raises(SpecError) as caught:
        check(spec_file)
    assert caught.value.line == line_of(text, '"name": "fc2"')
    rc, _, err = run("validate", spec_file)
    assert rc == 1 and err.startswith(f"{spec_file}:{caught.value.line}:")
    assert "in_features is 6 but its input has 5 features" in err
