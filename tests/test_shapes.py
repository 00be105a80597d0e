"""Unit tests for shape inference without torch (specbuild.shapes.core and its rules).
The oracle test against real torch is test_shape_rules_vs_torch.py."""
from __future__ import annotations

import subprocess
import sys

import pytest

from specbuild.shapes.core import (INFERRED_ARGS, Inferred, ShapeError, format_shape, has_rule, infer,
                                   infer_on_meta)
from specbuild.shapes.index import parse_index

N = "N"


def out(type_name, args, *inputs):
    return infer(type_name, args, list(inputs)).output


def test_importing_the_shape_modules_does_not_import_torch():
    code = ("import sys, specbuild.shapes.core, specbuild.shapes.layers, specbuild.shapes.ops, "
            "specbuild.shapes.index, specbuild.shapes.rearrange, specbuild.shapes.sequence\n"
            "from specbuild.shapes.core import infer\n"
            "infer('Linear', {'out_features': 3}, [('N', 4)])\n"
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(_root()))


def _root():
    from pathlib import Path
    return Path(__file__).resolve().parent.parent


def test_format_shape():
    assert format_shape((N, 32, 14, 14)) == "[N, 32, 14, 14]"
    assert format_shape((N, None)) == "[N, ?]"
    assert format_shape(()) == "[]"
    assert format_shape([(N, 5), [(1, N, 3), (1, N, 3)]]) == "([N, 5], ([1, N, 3], [1, N, 3]))"


def test_has_rule_and_unknown_types():
    assert has_rule("Conv2d") and has_rule("slice") and has_rule("weight_norm")
    assert not has_rule("Conv2D")
    with pytest.raises(ShapeError) as e:
        infer("Conv2D", {}, [(N, 3, 8, 8)])
    assert "Conv2d" in e.value.hint


def test_unknown_and_missing_args_are_named():
    with pytest.raises(ShapeError) as e:
        infer("Linear", {"out_feature": 10}, [(N, 4)])
    assert e.value.arg == "out_feature" and "out_features" in e.value.hint
    with pytest.raises(ShapeError) as e:
        infer("Linear", {}, [(N, 4)])
    assert e.value.arg == "out_features" and "needs out_features" in e.value.message
    assert out("Identity", {"whatever": 1}, (N, 4)) == (N, 4)     # Identity takes any args


# --- inference of omitted sizes --------------------------------------------------------

@pytest.mark.parametrize("type_name, args, inputs, filled, output", [
    ("Linear", {"out_features": 10}, [(N, 6272)], {"in_features": 6272}, (N, 10)),
    ("Bilinear", {"out_features": 2}, [(N, 3), (N, 4)], {"in1_features": 3, "in2_features": 4},
     (N, 2)),
    ("Conv2d", {"out_channels": 32, "kernel_size": 3, "padding": 1}, [(N, 1, 28, 28)],
     {"in_channels": 1}, (N, 32, 28, 28)),
    ("ConvTranspose2d", {"out_channels": 8, "kernel_size": 2, "stride": 2}, [(N, 16, 7, 7)],
     {"in_channels": 16}, (N, 8, 14, 14)),
    ("Conv1d", {"out_channels": 4, "kernel_size": 3}, [(5, 10)], {"in_channels": 5}, (4, 8)),
    ("BatchNorm1d", {}, [(N, 20)], {"num_features": 20}, (N, 20)),
    ("BatchNorm2d", {}, [(N, 32, 14, 14)], {"num_features": 32}, (N, 32, 14, 14)),
    ("InstanceNorm2d", {}, [(N, 3, 8, 8)], {"num_features": 3}, (N, 3, 8, 8)),
    ("GroupNorm", {"num_groups": 4}, [(N, 32, 7)], {"num_channels": 32}, (N, 32, 7)),
    ("LayerNorm", {}, [(N, 10, 64)], {"normalized_shape": 64}, (N, 10, 64)),
    ("RMSNorm", {}, [(N, 64)], {"normalized_shape": 64}, (N, 64)),
    ("GRU", {"hidden_size": 20, "batch_first": True}, [(N, 7, 10)], {"input_size": 10},
     [(N, 7, 20), (1, N, 20)]),
    ("LSTMCell", {"hidden_size": 6}, [(N, 3)], {"input_size": 3}, [(N, 6), (N, 6)]),
    ("MultiheadAttention", {"num_heads": 4, "batch_first": True}, [(N, 5, 16)],
     {"embed_dim": 16}, [(N, 5, 16), (N, 5, 5)]),
    ("TransformerEncoderLayer", {"nhead": 4}, [(9, N, 16)], {"d_model": 16}, (9, N, 16)),
])
def test_omitted_sizes_are_inferred(type_name, args, inputs, filled, output):
    given = dict(args)
    r = infer(type_name, args, inputs)
    assert r.output == output
    assert r.args == {**given, **filled}
    assert args == given and r.args is not args           # a new dict; the spec's is untouched


def test_given_sizes_are_checked_and_kept():
    r = infer("Linear", {"in_features": 784, "out_features": 10}, [(N, 784)])
    assert r.args == {"in_features": 784, "out_features": 10}
    assert infer("LayerNorm", {"normalized_shape": [10, 64]}, [(N, 10, 64)]).params == 1280


def test_inferred_args_names_what_may_be_omitted():
    assert INFERRED_ARGS["Linear"] == ("in_features",)
    assert INFERRED_ARGS["Conv3d"] == ("in_channels",) == INFERRED_ARGS["ConvTranspose1d"]
    assert INFERRED_ARGS["Bilinear"] == ("in1_features", "in2_features")
    assert INFERRED_ARGS["GroupNorm"] == ("num_channels",)
    assert INFERRED_ARGS["MultiheadAttention"] == ("embed_dim",)
    assert INFERRED_ARGS["LSTM"] == ("input_size",) == INFERRED_ARGS["GRUCell"]
    assert INFERRED_ARGS["TransformerDecoderLayer"] == ("d_model",)
    assert "ReLU" not in INFERRED_ARGS and "reshape" not in INFERRED_ARGS


# --- mismatches: the message names the arg and shows the shapes -------------------------

@pytest.mark.parametrize("type_name, args, inputs, arg, fragments", [
    ("Linear", {"in_features": 784, "out_features": 10}, [(N, 6272)], "in_features",
     ["in_features is 784 but its input has 6272 features (input shape [N, 6272])"]),
    ("Conv2d", {"in_channels": 3, "out_channels": 8, "kernel_size": 3}, [(N, 1, 28, 28)],
     "in_channels", ["in_channels is 3", "1 channels", "[N, 1, 28, 28]"]),
    ("Conv2d", {"out_channels": 8, "kernel_size": 7}, [(N, 1, 5, 5)], "kernel_size",
     ["kernel_size", "[N, 1, 5, 5]", "is 5", "kernel 7"]),
    ("Conv1d", {"out_channels": 8, "kernel_size": 3, "dilation": 3}, [(N, 1, 6)], "kernel_size",
     ["[N, 1, 6]", "dilated to 7"]),
    ("Conv2d", {"out_channels": 8, "kernel_size": 3, "groups": 3}, [(N, 4, 8, 8)], "groups",
     ["in_channels 4", "groups 3", "[N, 4, 8, 8]"]),
    ("Conv2d", {"out_channels": 8, "kernel_size": 3}, [(N, 784)], None,
     ["Conv2d expects a 3-d or 4-d input", "[N, 784] (2-d)"]),
    ("MaxPool2d", {"kernel_size": 4}, [(N, 1, 3, 3)], "kernel_size", ["[N, 1, 3, 3]", "is 3"]),
    ("BatchNorm2d", {"num_features": 16}, [(N, 32, 14, 14)], "num_features",
     ["num_features is 16", "32 channels", "[N, 32, 14, 14]"]),
    ("GroupNorm", {"num_groups": 4}, [(N, 6, 3)], "num_groups",
     ["num_channels 6 is not divisible by num_groups 4", "[N, 6, 3]"]),
    ("LayerNorm", {"normalized_shape": [4, 5]}, [(N, 3, 5)], "normalized_shape",
     ["[4, 5]", "[N, 3, 5]", "ends in [3, 5]"]),
    ("LSTM", {"input_size": 5, "hidden_size": 4}, [(N, 3, 6)], "input_size",
     ["input_size is 5", "6 features", "[N, 3, 6]"]),
    ("MultiheadAttention", {"num_heads": 3}, [(5, N, 8)], "num_heads",
     ["embed_dim 8 is not divisible by num_heads 3"]),
    ("MultiheadAttention", {"num_heads": 2}, [(5, N, 8), (6, N, 8), (7, N, 8)], None,
     ["key [6, N, 8]", "value [7, N, 8]", "sequence length"]),
    ("TransformerDecoderLayer", {"nhead": 2}, [(5, N, 8), (6, N, 4)], "d_model",
     ["memory [6, N, 4]", "tgt [5, N, 8]", "d_model is 8"]),
    ("Bilinear", {"out_features": 3}, [(N, 2, 3), (N, 4)], None, ["[N, 2, 3]", "[N, 4]"]),
    ("GLU", {}, [(N, 5)], "dim", ["GLU halves dim -1", "[N, 5]"]),
    ("PixelShuffle", {"upscale_factor": 2}, [(N, 6, 4, 4)], "upscale_factor",
     ["[N, 6, 4, 4]", "not divisible by 4"]),
    ("ReflectionPad2d", {"padding": 4}, [(N, 6, 4, 4)], "padding", ["[N, 6, 4, 4]"]),
    ("Embedding", {"num_embeddings": 4, "embedding_dim": 2, "padding_idx": 9}, [(N, 3)],
     "padding_idx", ["padding_idx 9", "num_embeddings 4"]),
    ("cat", {"dim": 1}, [(N, 3, 4), (N, 3, 5)], "dim", ["[N, 3, 5]", "[N, 3, 4]", "dim 2"]),
    ("add", {}, [(N, 3, 4), (N, 3, 5)], None, ["[N, 3, 5]", "[N, 3, 4]", "4 vs 5"]),
    ("add", {}, [(N, 3, 4), (3, 3, 4)], None, ["N vs 3"]),
    ("matmul", {}, [(N, 3, 4), (N, 5, 4)], None, ["[N, 3, 4] @ [N, 5, 4]", "4 and 5"]),
    ("reshape", {"shape": [-1, 5]}, [(N, 3, 4)], "shape", ["[N, 3, 4]", "[-1, 5]", "N*12"]),
    ("view", {"shape": [8, 12]}, [(N, 3, 4)], "shape", ["[N, 3, 4]", "[8, 12]"]),
    ("transpose", {"dim0": 0, "dim1": 3}, [(N, 3, 4)], "dim1", ["dim1 3", "3-d"]),
    ("flatten", {"start_dim": 2, "end_dim": 1}, [(N, 3, 4)], "start_dim", ["[N, 3, 4]"]),
    ("permute", {"dims": [0, 1]}, [(N, 3, 4)], "dims", ["[N, 3, 4]"]),
    ("stack", {}, [(N, 3, 4), (N, 3, 5)], None, ["[N, 3, 5]", "[N, 3, 4]"]),
    ("RNN", {"hidden_size": 3}, [(N, 3, 4), (2, 3, 3)], None, ["[2, 3, 3]", "[1, 3, 3]"]),
])
def test_mismatch_messages(type_name, args, inputs, arg, fragments):
    with pytest.raises(ShapeError) as e:
        infer(type_name, args, inputs)
    assert e.value.arg == arg
    for fragment in fragments:
        assert fragment in e.value.message


def test_mismatch_hint_says_how_to_fix():
    with pytest.raises(ShapeError) as e:
        infer("Linear", {"in_features": 784, "out_features": 10}, [(N, 6272)])
    assert e.value.hint == "drop in_features to infer it, or set it to 6272"
    assert "drop in_features" in str(e.value)


def test_a_multi_value_where_a_tensor_is_wanted():
    with pytest.raises(ShapeError) as e:
        infer("Linear", {"out_features": 2}, [[(N, 5, 8), (1, N, 8)]])
    assert "multi-value ([N, 5, 8], [1, N, 8])" in e.value.message and "item" in e.value.hint


def test_unknown_dims_cannot_be_inferred():
    with pytest.raises(ShapeError) as e:
        infer("Linear", {"out_features": 2}, [(N, None)])
    assert e.value.arg == "in_features" and "unknown" in e.value.message
    assert out("Linear", {"in_features": 3, "out_features": 2}, (N, None)) == (N, 2)


# --- symbolic dims ------------------------------------------------------------------------

def test_batch_and_unknown_dims():
    assert out("Conv2d", {"in_channels": 1, "out_channels": 4, "kernel_size": 3},
               (N, 1, None, 9)) == (N, 4, None, 7)
    assert out("flatten", {}, (N, 4, 4)) == (N, 16)
    assert out("flatten", {"start_dim": 0}, (N, 4)) == (None,)      # N*4 is unknown
    assert out("flatten", {"start_dim": 0}, (N, 1)) == (N,)
    assert out("reshape", {"shape": [N, -1, 4]}, (N, 2, 8)) == (N, 4, 4)
    assert out("reshape", {"shape": [-1, 16]}, (N, 4, 4)) == (N, 16)
    assert out("reshape", {"shape": [-1, 8]}, (N, 4, 4)) == (None, 8)
    assert out("add", {}, (N, 1, 4), (5, 1), (None, 5, 4)) == (N, 5, 4)
    assert out("cat", {"dim": 0}, (N, 3), (N, 3)) == (None, 3)
    assert out("cat", {"dim": 1}, (N, 3), (N, 5)) == (N, 8)
    assert out("slice", {"at": "[:, -1]"}, (N, 5, 6)) == (N, 6)
    assert out("slice", {"at": "[1:]"}, (N, 5)) == (None, 5)


# --- parameter counts --------------------------------------------------------------------

@pytest.mark.parametrize("type_name, args, inputs, params", [
    ("Linear", {"out_features": 10}, [(N, 784)], 7850),
    ("Linear", {"out_features": 10, "bias": False}, [(N, 784)], 7840),
    ("Conv2d", {"out_channels": 32, "kernel_size": 3}, [(N, 1, 28, 28)], 320),
    ("Conv2d", {"out_channels": 8, "kernel_size": [3, 5], "groups": 2, "bias": False},
     [(N, 4, 9, 9)], 8 * 2 * 15),
    ("ConvTranspose2d", {"out_channels": 6, "kernel_size": 2, "groups": 3}, [(N, 3, 4, 4)],
     3 * 2 * 4 + 6),
    ("BatchNorm2d", {}, [(N, 32, 14, 14)], 64),                # running stats are buffers
    ("BatchNorm2d", {"affine": False}, [(N, 32, 14, 14)], 0),
    ("InstanceNorm1d", {}, [(N, 4, 9)], 0),
    ("InstanceNorm1d", {"affine": True}, [(N, 4, 9)], 8),
    ("LayerNorm", {"bias": False}, [(N, 64)], 64),
    ("PReLU", {"num_parameters": 8}, [(N, 8, 3)], 8),
    ("Embedding", {"num_embeddings": 1000, "embedding_dim": 32}, [(N, 12)], 32000),
    ("LSTM", {"hidden_size": 20}, [(5, N, 10)], 4 * 20 * (10 + 20) + 2 * 4 * 20),
    ("LSTM", {"hidden_size": 20, "num_layers": 2, "bidirectional": True}, [(5, N, 10)],
     2 * (4 * 20 * (10 + 20) + 160) + 2 * (4 * 20 * (40 + 20) + 160)),
    ("LSTM", {"hidden_size": 20, "proj_size": 5}, [(5, N, 10)],
     4 * 20 * (10 + 5) + 160 + 5 * 20),
    ("GRU", {"hidden_size": 8, "bias": False}, [(5, N, 4)], 3 * 8 * (4 + 8)),
    ("MultiheadAttention", {"num_heads": 2}, [(5, N, 8)], 3 * 64 + 24 + 64 + 8),
    ("MultiheadAttention", {"num_heads": 2, "kdim": 4, "vdim": 6}, [(5, N, 8), (7, N, 4), (7, N, 6)],
     64 + 32 + 48 + 24 + 64 + 8),
    ("relu", {}, [(N, 8)], 0),
])
def test_parameter_counts(type_name, args, inputs, params):
    assert infer(type_name, args, inputs).params == params


def test_param_shapes_are_named_as_torch_names_them():
    r = infer("LSTM", {"hidden_size": 3, "bidirectional": True}, [(5, N, 2)])
    assert r.param_shapes["weight_ih_l0_reverse"] == (12, 2)
    assert r == Inferred(r.output, r.args, r.params)       # param_shapes is not compared


# --- multi-values --------------------------------------------------------------------------

def test_recurrent_outputs():
    assert out("RNN", {"hidden_size": 4}, (7, N, 3)) == [(7, N, 4), (1, N, 4)]
    assert out("LSTM", {"hidden_size": 4, "num_layers": 2, "bidirectional": True},
               (7, N, 3)) == [(7, N, 8), [(4, N, 4), (4, N, 4)]]
    assert out("LSTM", {"hidden_size": 4, "proj_size": 2, "batch_first": True},
               (N, 7, 3)) == [(N, 7, 2), [(1, N, 2), (1, N, 4)]]
    assert out("GRU", {"hidden_size": 4}, (7, 3)) == [(7, 4), (1, 4)]          # unbatched


def test_item_picks_one_value():
    lstm = out("LSTM", {"hidden_size": 4}, (7, N, 3))
    assert out("item", {"index": 0}, lstm) == (7, N, 4)
    assert out("item", {"index": 1}, lstm) == [(1, N, 4), (1, N, 4)]
    assert out("item", {"index": -1}, out("item", {"index": 1}, lstm)) == (1, N, 4)
    with pytest.raises(ShapeError) as e:
        infer("item", {"index": 0}, [(N, 5)])
    assert "item takes one value of a multi-value output such as RNN's (out, h)" in e.value.message
    with pytest.raises(ShapeError) as e:
        infer("item", {"index": 2}, [lstm])
    assert e.value.arg == "index"


def test_chunk():
    assert out("chunk", {"chunks": 3, "dim": 1}, (N, 7)) == [(N, 3), (N, 3), (N, 1)]
    assert out("chunk", {"chunks": 1}, (N, 4)) == [(N, 4)]
    with pytest.raises(ShapeError, match="the number of pieces"):   # N=1 gives one piece, N=5 two
        infer("chunk", {"chunks": 2}, [(N, 4)])


def test_mha_weights_and_kdim():
    r = infer("MultiheadAttention", {"num_heads": 2, "add_bias_kv": True},
              [(5, N, 8), (6, N, 4), (6, N, 4)])
    assert r.output == [(5, N, 8), (N, 5, 7)]
    assert r.args == {"num_heads": 2, "add_bias_kv": True, "embed_dim": 8, "kdim": 4, "vdim": 4}


# --- index parsing and slicing --------------------------------------------------------------

def test_parse_index():
    assert parse_index("[:, -1, :]") == (slice(None), -1, slice(None))
    assert parse_index("[..., 0]") == (Ellipsis, 0)
    assert parse_index("[:, None]") == (slice(None), None)
    assert parse_index(" [ 1:-2:3 , ::2, 5: ] ") == (slice(1, -2, 3), slice(None, None, 2),
                                                      slice(5, None))
    assert parse_index("[0,]") == (0,)
    assert parse_index("2") == (2,)


@pytest.mark.parametrize("text", ["[x]", "[1, , 2]", "[..., ...]", "[1:2:3:4]", "[]",
                                  "[__import__('os')]", "[1.5]", "[[0]]", 7])
def test_parse_index_rejects(text):
    with pytest.raises(ShapeError) as e:
        parse_index(text)
    assert e.value.arg == "at"


def test_slice_shapes():
    x = (N, 5, 6)
    assert out("slice", {"at": "[:, -1, :]"}, x) == (N, 6)
    assert out("slice", {"at": "[..., 0]"}, x) == (N, 5)
    assert out("slice", {"at": "[:, None]"}, x) == (N, 1, 5, 6)
    assert out("slice", {"at": "[:, 1:4, ::2]"}, x) == (N, 3, 3)
    assert out("slice", {"at": "[:, 10:]"}, x) == (N, 0, 6)
    for bad, message in [("[:, 5]", "index 5 is out of range for dim 1 of size 5 (input [N, 5, 6])"),
                         ("[:, :, :, 0]", "index [:, :, :, 0] has 4 indices but the input [N, 5, 6] has only 3 dims"),
                         ("[:, ::-1]", "slice step must be positive, not -1")]:
        with pytest.raises(ShapeError) as e:
            infer("slice", {"at": bad}, [x])
        assert e.value.message == message


# --- layers that take layers ---------------------------------------------------------------

def test_transformer_encoder_fills_its_nested_layer():
    layer = {"type": "TransformerEncoderLayer", "nhead": 8}
    args = {"encoder_layer": layer, "num_layers": 6, "norm": {"type": "LayerNorm"}}
    r = infer("TransformerEncoder", args, [(10, N, 512)])
    assert r.output == (10, N, 512)
    assert r.args["encoder_layer"] == {"type": "TransformerEncoderLayer", "nhead": 8,
                                       "d_model": 512}
    assert r.args["norm"] == {"type": "LayerNorm", "normalized_shape": 512}
    assert layer == {"type": "TransformerEncoderLayer", "nhead": 8}         # untouched
    one = infer("TransformerEncoderLayer", {"nhead": 8}, [(10, N, 512)]).params
    assert r.params == 6 * one + 2 * 512
    with pytest.raises(ShapeError) as e:
        infer("TransformerEncoder", {"encoder_layer": {**layer, "nhead": 7}, "num_layers": 1},
              [(10, N, 512)])
    assert e.value.arg == "encoder_layer.nhead" and "encoder_layer" in e.value.message


def test_weight_norm():
    linear = {"type": "Linear", "out_features": 7}
    r = infer("weight_norm", {"module": linear}, [(N, 5)])
    assert r.output == (N, 7) and r.params == 7 * 5 + 7 + 7           # + weight_g (7, 1)
    assert r.args["module"] == {**linear, "in_features": 5}
    assert infer("weight_norm", {"module": linear, "dim": 1}, [(N, 5)]).params == 42 + 5
    assert infer("weight_norm", {"module": linear, "dim": None}, [(N, 5)]).params == 42 + 1
    conv = {"type": "ConvTranspose2d", "out_channels": 4, "kernel_size": 2}
    assert infer("weight_norm", {"module": conv}, [(N, 3, 5, 5)]).params == 3 * 4 * 4 + 4 + 3
    with pytest.raises(ShapeError) as e:
        infer("weight_norm", {"module": linear, "name": "wieght"}, [(N, 5)])
    assert e.value.arg == "name" and "'weight'" in e.value.hint
    with pytest.raises(ShapeError) as e:
        infer("weight_norm", {"module": {"type": "Linear", "in_features": 4, "out_features": 7}},
              [(N, 5)])
    assert e.value.arg == "module.in_features"


def test_spectral_norm_keeps_the_count():
    r = infer("spectral_norm", {"module": {"type": "Linear", "out_features": 3}}, [(N, 4)])
    assert r.params == 15 and "weight_orig" in r.param_shapes


# --- the meta-device fallback ---------------------------------------------------------------

def test_infer_on_meta():
    torch = pytest.importorskip("torch")

    class Twice(torch.nn.Module):             # a user type without a rule
        def __init__(self, width):
            super().__init__()
            self.fc = torch.nn.Linear(width, 2 * width)

        def forward(self, x):
            return self.fc(x), x.flatten(0)

    r = infer_on_meta(Twice, {"width": 3}, [(N, 5, 3)])
    assert r.output == [(N, 5, 6), (None,)]             # flatten(0) gives N*15: unknown
    assert r.params == 3 * 6 + 6 and r.args == {"width": 3}
    r = infer_on_meta(torch.nn.Embedding, {"num_embeddings": 9, "embedding_dim": 4}, [(N, 7)],
                      dtypes=["long"])
    assert r.output == (N, 7, 4) and r.params == 36
    with pytest.raises(ShapeError) as e:
        infer_on_meta(torch.nn.Linear, {"in_features": 4, "out_features": 2}, [(N, 5)])
    assert "reduction dim" in e.value.message          # torch's own message
