"""The oracle: every shape rule against real torch on the meta device.

For each rule type, many argument combinations (hand-picked plus a seeded random
sample) are run through both the rule and torch (module built and run under
`torch.device("meta")`, batch size 2 and 3 in place of "N").  Where torch accepts,
the rule's output shape(s) and parameter count must equal torch's; where torch
rejects, the rule must reject too.  A rule without cases here fails the test.
"""
from __future__ import annotations

import functools
import itertools
import math
import operator
import random
import warnings

import pytest

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional

from specbuild.inputs import DTYPES  # noqa: E402
from specbuild.shapes.index import parse_index  # noqa: E402
from specbuild.shapes.core import INFERRED_ARGS, RULES, ShapeError, infer  # noqa: E402

OMIT = object()
CASES: dict[str, list] = {}          # type -> [(args, inputs)]
LONG = {"Embedding": {0}, "EmbeddingBag": {0, 1}, "MaxUnpool1d": {1}, "MaxUnpool2d": {1},
        "MaxUnpool3d": {1}}
BOOL = {"masked_fill": {1}, "where": {0}}   # inputs that are bool masks (condition, mask)
EVAL = {"SyncBatchNorm"}             # SyncBatchNorm trains only under a process group


def case(type_name, args, *inputs):
    CASES.setdefault(type_name, []).append(
        ({k: v for k, v in args.items() if v is not OMIT}, list(inputs)))


def grid(type_name, inputs_list, **space):
    """Every combination of the listed arg values with every inputs tuple."""
    names = list(space)
    for values in itertools.product(*space.values()):
        for inputs in inputs_list:
            case(type_name, dict(zip(names, values)), *inputs)


def sample(type_name, rng, count, inputs_fn, **space):
    """`count` random combinations; inputs_fn(rng, args) gives the inputs."""
    for _ in range(count):
        args = {k: rng.choice(v) for k, v in space.items()}
        case(type_name, args, *inputs_fn(rng, {k: v for k, v in args.items() if v is not OMIT}))


# --- torch side --------------------------------------------------------------------

def _sub(value, n):
    if isinstance(value, dict):
        return {k: _sub(v, n) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_sub(v, n) for v in value)
    return n if value == "N" else value


def build_module(type_name, args):
    # as the compiler does: nested specs become modules, lists tuples
    if type_name == "Sequential":
        return nn.Sequential(*[build_module(layer["type"], {a: b for a, b in layer.items() if a != "type"})
                               for layer in args["layers"]])
    args = {k: build_module(v["type"], {a: b for a, b in v.items() if a != "type"})
            if isinstance(v, dict) and "type" in v else tuple(v) if isinstance(v, list) else v
            for k, v in args.items()}
    if type_name == "weight_norm":
        return torch.nn.utils.weight_norm(args.pop("module"), **args)
    if type_name == "spectral_norm":
        return torch.nn.utils.spectral_norm(args.pop("module"), **args)
    return getattr(nn, type_name)(**args)


def _reduce(fn):
    def op(x, dim=None, keepdim=False):
        if dim is None:
            return fn(x, dim=tuple(range(x.dim())), keepdim=keepdim) if keepdim else fn(x)
        return fn(x, dim=dim, keepdim=keepdim)
    return op


ELEMENTWISE = {"relu": F.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "exp": torch.exp,
               "log": torch.log, "abs": torch.abs, "silu": F.silu, "elu": F.elu,
               "softplus": F.softplus, "leaky_relu": F.leaky_relu, "gelu": F.gelu,
               "clamp": torch.clamp, "dropout": F.dropout, "softmax": F.softmax,
               "log_softmax": F.log_softmax}
OPS = {
    "flatten": lambda xs, start_dim=1, end_dim=-1: torch.flatten(xs[0], start_dim, end_dim),
    "reshape": lambda xs, shape: torch.reshape(xs[0], shape),
    "view": lambda xs, shape: xs[0].view(shape),
    "permute": lambda xs, dims: xs[0].permute(dims),
    "transpose": lambda xs, dim0, dim1: torch.transpose(xs[0], dim0, dim1),
    "unsqueeze": lambda xs, dim: torch.unsqueeze(xs[0], dim),
    "squeeze": lambda xs, dim=None: xs[0].squeeze() if dim is None else
    xs[0].squeeze(tuple(dim) if isinstance(dim, list) else dim),
    "cat": lambda xs, dim=0: torch.cat(xs, dim), "stack": lambda xs, dim=0: torch.stack(xs, dim),
    "add": lambda xs: functools.reduce(operator.add, xs),
    "sub": lambda xs: functools.reduce(operator.sub, xs),
    "mul": lambda xs: functools.reduce(operator.mul, xs),
    "div": lambda xs: functools.reduce(operator.truediv, xs),
    "matmul": lambda xs: functools.reduce(torch.matmul, xs),
    "chunk": lambda xs, chunks, dim=0: torch.chunk(xs[0], chunks, dim),
    "item": lambda xs, index: xs[0][index],
    "slice": lambda xs, at: xs[0][parse_index(at)],
    "split": lambda xs, split_size_or_sections, dim=0: torch.split(xs[0], split_size_or_sections, dim),
    "unflatten": lambda xs, dim, sizes: torch.unflatten(xs[0], dim, sizes),
    "expand": lambda xs, size: xs[0].expand(*size),
    "repeat_interleave": lambda xs, repeats, dim=None: torch.repeat_interleave(xs[0], repeats, dim),
    "tril": lambda xs, diagonal=0: torch.tril(xs[0], diagonal),
    "triu": lambda xs, diagonal=0: torch.triu(xs[0], diagonal),
    "masked_fill": lambda xs, value: torch.masked_fill(xs[0], xs[1], value),
    "where": lambda xs: torch.where(*xs),
    "scaled_dot_product_attention": lambda xs, **kw: F.scaled_dot_product_attention(*xs, **kw),
    "arange": lambda xs, dim: torch.arange(xs[0].size(dim)),
    "constant": lambda xs, value, dtype=None: torch.tensor(value, dtype=dtype and getattr(torch, DTYPES[dtype])),
    **{name: (lambda fn: lambda xs, **kw: _reduce(fn)(xs[0], **kw))(getattr(torch, name))
       for name in ("mean", "sum", "amax", "amin")},
    **{name: (lambda fn: lambda xs, **kw: fn(xs[0], **kw))(fn) for name, fn in ELEMENTWISE.items()},
}


def make_inputs(type_name, inputs, n):
    def make(value, i):
        if isinstance(value, list):
            return tuple(make(v, i) for v in value)
        size = [n if d == "N" else d for d in value]
        if i in LONG.get(type_name, ()):
            return torch.zeros(size, dtype=torch.long)
        if i in BOOL.get(type_name, ()):
            return torch.zeros(size, dtype=torch.bool)
        return torch.empty(size)
    return [make(x, i) for i, x in enumerate(inputs)]


def shape_of(out):
    if isinstance(out, torch.Tensor):
        return tuple(out.shape)
    return [shape_of(o) for o in out]


def run_torch(type_name, args, inputs, device="meta"):
    """([output shapes at N=2, N=3], params), or the exception torch raised."""
    try:
        with warnings.catch_warnings(), torch.device(device), torch.no_grad():
            warnings.simplefilter("ignore")
            outs, params = [], 0
            if type_name in OPS:
                for n in (2, 3):
                    outs.append(shape_of(OPS[type_name](make_inputs(type_name, inputs, n),
                                                        **_sub(args, n))))
            else:
                module = build_module(type_name, args)
                if type_name == "MultiheadAttention":     # key and value default to query
                    inputs = (inputs + inputs[-1:] * 2)[:3] if len(inputs) < 3 else inputs
                if type_name in EVAL:
                    module.eval()
                params = sum(p.numel() for p in module.parameters())
                for n in (2, 3):
                    outs.append(shape_of(module(*make_inputs(type_name, inputs, n))))
            return outs, params
    except Exception as e:  # torch raises many kinds
        if isinstance(e, TypeError) and "required positional argument" in str(e):
            raise AssertionError(f"the test built {type_name}({args}) without a size") from e
        return e


def _fits(rule_out, out2, out3):
    """The rule's output against torch's at N=2 and N=3: "N" where torch's dim is the
    batch size; None (unknown) only where torch's dim depends on the batch in another
    way (e.g. N*6 after a flatten over the batch)."""
    if isinstance(rule_out, list) or isinstance(out2, list):
        return (isinstance(rule_out, list) and isinstance(out2, list)
                and len(rule_out) == len(out2) == len(out3)
                and all(_fits(*z) for z in zip(rule_out, out2, out3)))
    return len(rule_out) == len(out2) and all(
        (r == "N" and (t2, t3) == (2, 3)) or r == t2 == t3 or (r is None and t2 != t3)
        for r, t2, t3 in zip(rule_out, out2, out3))


def _channel_dim(type_name, x):
    n = int(type_name[-2]) if type_name[-2].isdigit() else 0
    return 1 if n and len(x) == n + 2 or type_name.startswith(("BatchNorm", "Group", "Sync")) else 0


def torch_args(type_name, args, inputs):
    """The args with the omitted input sizes filled in the test's own way, so that torch
    can be built where the rule rejects (and gives none)."""
    x = inputs[0] if inputs and isinstance(inputs[0], tuple) else ()
    fill = {"in_features": -1, "input_size": -1, "normalized_shape": -1, "embed_dim": -1,
            "d_model": -1, "in1_features": -1, "in2_features": -1, "in_channels": "c",
            "num_features": "c", "num_channels": "c"}
    out = dict(args)
    for name in INFERRED_ARGS.get(type_name, ()):
        if out.get(name) is None and x:
            i = fill[name]
            out[name] = inputs[1][-1] if name == "in2_features" else \
                x[_channel_dim(type_name, x)] if i == "c" else x[-1]
    for key in ("encoder_layer", "decoder_layer"):
        if isinstance(out.get(key), dict) and x:
            out[key] = {"d_model": x[-1], **out[key]}
    if isinstance(out.get("norm"), dict) and x:
        out["norm"] = {"normalized_shape": x[-1], **out["norm"]}
    if isinstance(out.get("module"), dict):
        m = out["module"]
        out["module"] = {"type": m["type"], **torch_args(
            m["type"], {k: v for k, v in m.items() if k != "type"}, inputs)}
    return out


def compare(type_name, args, inputs):
    """None when the rule agrees with torch, else what differs."""
    try:
        got = infer(type_name, args, inputs)
    except ShapeError as e:
        got, error = None, e
    expected = run_torch(type_name, got.args if got else torch_args(type_name, args, inputs),
                         inputs)
    if got is None:
        if not isinstance(expected, Exception):
            # the meta device skips some checks (ConvTranspose's channels): ask the CPU
            expected = run_torch(type_name, torch_args(type_name, args, inputs), inputs, "cpu")
        if isinstance(expected, Exception) or (type_name, error.arg) in STRICTER:
            return None
        return f"rule rejected ({error}) but torch gives {expected}"
    if isinstance(expected, Exception):
        return f"torch rejected ({type(expected).__name__}: {str(expected)[:150]}) " \
               f"but the rule gives {got.output}"
    (out2, out3), params = expected
    if not _fits(got.output, out2, out3):
        return f"rule gives {got.output}, torch {out2} (N=2) and {out3} (N=3)"
    if got.params != params:
        return f"rule counts {got.params} parameters, torch {params}"
    return None


# Where the rule is deliberately stricter than torch: (type, the arg it blames).
# Norm layers without weights never look at their size args; zero-size outputs and
# Dropout2d's deprecated 2-d input are refused on purpose.
STRICTER = {*((f"{k}{n}d", "num_features") for k in ("BatchNorm", "InstanceNorm") for n in (1, 2, 3)),
            ("GroupNorm", "num_channels"), ("SyncBatchNorm", "num_features"),
            *((f"ConvTranspose{n}d", "padding") for n in (1, 2, 3)), ("Dropout2d", None), ("split", "dim")}


# --- the cases -------------------------------------------------------------------------

rng = random.Random(20240501)
B = ["N"]
for bias in (True, False):
    for x, given in [(("N", 6), OMIT), (("N", 6), 6), (("N", 6), 5), ((6,), OMIT),
                     (("N", 2, 3, 6), OMIT), (("N", 2, 6), 6)]:
        case("Linear", dict(in_features=given, out_features=4, bias=bias), x)
    case("Bilinear", dict(in1_features=OMIT, in2_features=4, out_features=2, bias=bias),
         ("N", 3), ("N", 4))
    case("Bilinear", dict(out_features=2, bias=bias), ("N", 5, 3), ("N", 5, 4))
case("Bilinear", dict(in1_features=2, out_features=2), ("N", 3), ("N", 4))
case("Identity", {}, ("N", 3, 4))
case("Identity", {"anything": 1, "at": "all"}, ("N", 3))
grid("Flatten", [[("N", 2, 3, 4)], [("N", 5)]], start_dim=[OMIT, 0, 1, 2, -1, 4],
     end_dim=[OMIT, -1, 1, 2])
grid("Unflatten", [[("N", 12, 5)]], dim=[1, -2, 2], unflattened_size=[[3, 4], [2, -1], [5, 1], [5, 3]])

SPATIAL = {1: [(5,), (3,), (1,)], 2: [(5, 6), (2, 7), (3, 3)], 3: [(4, 5, 3), (2, 2, 3)]}


def conv_inputs(n, channels):
    def fn(rng, args):
        s = rng.choice(SPATIAL[n])
        c = channels if "in_channels" not in args else rng.choice([args["in_channels"], 4])
        return [(c,) + s if rng.random() < 0.2 else ("N", c) + s]
    return fn


for n in (1, 2, 3):
    count = 70 if n < 3 else 40
    sample(f"Conv{n}d", rng, count, conv_inputs(n, 4), in_channels=[OMIT, 4, 2],
           out_channels=[2, 4, 6], kernel_size=[1, 2, 3, [3] * n, 6], stride=[1, 1, 2, 3],
           padding=[0, 1, 2, "same", "valid"], dilation=[1, 1, 2], groups=[1, 1, 2, 3],
           bias=[True, False], padding_mode=["zeros", "zeros", "reflect", "replicate", "circular"])
    sample(f"ConvTranspose{n}d", rng, count, conv_inputs(n, 4), in_channels=[OMIT, 4, 3],
           out_channels=[2, 6], kernel_size=[1, 2, 3], stride=[1, 2, 3], padding=[0, 1, 2, 4],
           output_padding=[0, 0, 1, 2], dilation=[1, 2], groups=[1, 2], bias=[True, False])
    pool = dict(kernel_size=[1, 2, 3, 4], stride=[None, 1, 2, 3], padding=[0, 1, 2],
                ceil_mode=[False, True])
    sample(f"MaxPool{n}d", rng, count, conv_inputs(n, 3), dilation=[1, 2],
           return_indices=[False, True], **pool)
    sample(f"AvgPool{n}d", rng, count, conv_inputs(n, 3), count_include_pad=[True, False],
           **({"divisor_override": [None, 2]} if n > 1 else {}), **pool)
    sample(f"LPPool{n}d", rng, 25, conv_inputs(n, 3), norm_type=[1, 2.0],
           kernel_size=[1, 2, 3], stride=[None, 1, 2], ceil_mode=[False, True])
    sizes = [1, 2, None, [2] * n, [None] + [1] * (n - 1)]
    sample(f"AdaptiveAvgPool{n}d", rng, 15, conv_inputs(n, 3), output_size=sizes)
    sample(f"AdaptiveMaxPool{n}d", rng, 15, conv_inputs(n, 3), output_size=sizes,
           return_indices=[False, True])
    for k, s, p in [(2, None, 0), (3, 2, 1), (2, 1, 0), (1, 1, 0), (2, 2, 1)]:
        for x in [("N", 3) + SPATIAL[n][0], (3,) + SPATIAL[n][1]]:
            case(f"MaxUnpool{n}d", dict(kernel_size=k, stride=s, padding=p), x, x)
    if n > 1:
        sample(f"FractionalMaxPool{n}d", rng, 20, conv_inputs(n, 3), kernel_size=[1, 2, 3],
               output_size=[None, 1, 2, 4], output_ratio=[None, 0.5, 0.3, 1.5],
               return_indices=[False, True])
case("MaxUnpool2d", dict(kernel_size=2), ("N", 3, 4, 4), ("N", 3, 4, 5))
case("Conv2d", dict(out_channels=2, kernel_size=3, padding="same", stride=2), ("N", 4, 5, 5))

for n, ranks in ((1, [("N", 4), ("N", 4, 5), ("N", 4, 1)]), (2, [("N", 4, 3, 2), ("N", 4, 3)]),
                 (3, [("N", 4, 2, 3, 2)])):
    grid(f"BatchNorm{n}d", [[x] for x in ranks], num_features=[OMIT, 4, 3],
         affine=[True, False], bias=[True, False], track_running_stats=[True, False])
    grid(f"InstanceNorm{n}d", [[x] for x in [("N", 4) + (3,) * n, (4,) + (3,) * n,
                                              ("N", 4) + (1,) * n, ("N", 4, 3)]],
         num_features=[OMIT, 4], affine=[False, True], bias=[True, False])
grid("SyncBatchNorm", [[("N", 4)], [("N", 4, 3, 2)]], num_features=[OMIT, 4],
     affine=[True, False], bias=[True, False])
grid("GroupNorm", [[("N", 6)], [("N", 6, 5)], [("N", 6, 2, 2)], [(6, 3)]],
     num_groups=[1, 2, 3, 4], num_channels=[OMIT, 6], affine=[True, False], bias=[True, False])
for x in [("N", 3, 5), ("N", 5), (2, 3, 5)]:
    grid("LayerNorm", [[x]], normalized_shape=[OMIT, 5, [5], [3, 5], [4, 5], 4],
         elementwise_affine=[True, False], bias=[True, False])
    grid("RMSNorm", [[x]], normalized_shape=[OMIT, 5, [3, 5], 4], elementwise_affine=[True, False])
grid("LocalResponseNorm", [[("N", 4, 5)], [("N", 4, 3, 3)], [("N", 4)]], size=[1, 3])
grid("CrossMapLRN2d", [[("N", 4, 3, 3)], [("N", 4, 3)]], size=[1, 3])

for name, ranks in {"Dropout": [("N", 3), (4,)], "AlphaDropout": [("N", 3, 2)],
                    "FeatureAlphaDropout": [("N", 3, 2, 2)], "Dropout1d": [("N", 3, 4), (3, 4)],
                    "Dropout2d": [("N", 3, 4, 4), ("N", 3)], "Dropout3d": [("N", 3, 2, 2, 2)]}.items():
    grid(name, [[x] for x in ranks], p=[OMIT, 0.2, 1.5])
ACT_ARGS = {"LeakyReLU": [{"negative_slope": 0.2}], "ELU": [{"alpha": 0.5}],
            "CELU": [{"alpha": 2.0}], "GELU": [{"approximate": "tanh"}, {"approximate": "x"}],
            "Softplus": [{"beta": 2, "threshold": 10}],
            "Hardtanh": [{"min_val": -2.0, "max_val": 2.0}, {"min_val": 1.0, "max_val": 0.0}],
            "Threshold": [{"threshold": 0.1, "value": 0.0}], "Hardshrink": [{"lambd": 0.3}],
            "Softshrink": [{"lambd": 0.3}], "RReLU": [{"lower": 0.1, "upper": 0.2}],
            "Softmax": [{"dim": 1}, {"dim": -1}, {"dim": 4}], "LogSoftmax": [{"dim": 0}],
            "Softmin": [{"dim": 2}], "GLU": [{"dim": 1}, {"dim": -1}, {"dim": 0}],
            "PReLU": [{"num_parameters": 4}, {"num_parameters": 3}]}
for name in ["ReLU", "ReLU6", "SELU", "SiLU", "Mish", "Hardsigmoid", "Hardswish", "Sigmoid",
             "Tanh", "Softsign", "Tanhshrink", "LogSigmoid", "Softmax2d", *ACT_ARGS]:
    for args in ([{}] if name != "Threshold" else []) + ACT_ARGS.get(name, []):
        grid(name, [[("N", 4, 6)], [("N", 4, 3, 3)], [(4, 6)]], **{k: [v] for k, v in args.items()})

for size, sf, mode, ac in [(None, 2, "nearest", None), (None, 1.5, "nearest", None),
                           ([4, 5], None, "bilinear", True), (7, None, "nearest", None),
                           (None, [2, 0.5], "bicubic", False), (None, 2, "linear", None),
                           (None, 0.5, "trilinear", None), (None, 2, "area", None),
                           (None, 2, "nearest", True), (3, 2, "nearest", None),
                           (None, None, "nearest", None), (None, 0.1, "nearest", None)]:
    for x in [("N", 3, 5), ("N", 3, 5, 3), ("N", 2, 3, 4, 5)]:
        case("Upsample", dict(size=size, scale_factor=sf, mode=mode, align_corners=ac), x)
for name in ("UpsamplingNearest2d", "UpsamplingBilinear2d"):
    grid(name, [[("N", 3, 4, 5)], [("N", 3, 4)]], size=[None, 6, [2, 3]], scale_factor=[None, 2])
grid("PixelShuffle", [[("N", 8, 3, 4)], [("N", 9, 3, 4)], [("N", 2, 18, 3, 4)]], upscale_factor=[1, 2, 3])
grid("PixelUnshuffle", [[("N", 2, 4, 6)], [("N", 2, 3, 6)], [(2, 6, 6)]], downscale_factor=[1, 2, 3])
grid("ChannelShuffle", [[("N", 6, 4)], [("N", 6, 2, 2)], [("N", 6)]], groups=[1, 2, 4])
for n in (1, 2, 3):
    pads = [1, 0, 3, 5, [1, 2] * n, [-1, 2] * n, [2, -3] * n, [1, 2]]
    xs = [[("N", 3) + (4,) * n], [(3,) + (4,) * n], [("N", 2, 3) + (4,) * n]]
    for kind in ("Zero", "Reflection", "Replication", "Circular"):
        grid(f"{kind}Pad{n}d", xs, padding=pads)
    grid(f"ConstantPad{n}d", xs, padding=pads, value=[0.5])
grid("Fold", [[("N", 12, 12)], [("N", 12, 9)], [(12, 12)], [("N", 10, 12)]],
     output_size=[[4, 5], 5], kernel_size=[2, [2, 3]], padding=[0, 1], stride=[1, 2], dilation=[1])
grid("Unfold", [[("N", 3, 4, 5)], [(3, 4, 5)], [("N", 3, 1, 5)]], kernel_size=[2, [2, 3]],
     padding=[0, 1], stride=[1, 2], dilation=[1, 2])
grid("Embedding", [[("N",)], [("N", 7)], [(2, 3, 4)]], num_embeddings=[10], embedding_dim=[3],
     padding_idx=[None, 0, -1, 12])
grid("EmbeddingBag", [[("N", 7)]], num_embeddings=[10], embedding_dim=[3], mode=["sum", "max"])
case("EmbeddingBag", dict(num_embeddings=10, embedding_dim=3), (20,), (4,))
case("EmbeddingBag", dict(num_embeddings=10, embedding_dim=3, include_last_offset=True), (20,), (5,))
grid("CosineSimilarity", [[("N", 4), ("N", 4)], [("N", 3, 4), (1, 4)], [("N", 3), ("N", 4)]],
     dim=[OMIT, 0, -1])
grid("PairwiseDistance", [[("N", 4), ("N", 4)], [("N", 3, 4), (1, 4)], [(4,), (4,)]],
     keepdim=[False, True])

for kind in ("RNN", "LSTM", "GRU"):
    extra = {"proj_size": [0, 2, 3, 5]} if kind == "LSTM" else {"nonlinearity": ["tanh", "relu"]}

    def rnn_inputs(rng, args, kind=kind):
        x = rng.choice([("N", 5, 4), (6, "N", 4), (5, 4), ("N", 5, 3)])
        if rng.random() < 0.25:     # an initial state, right or wrong
            d = (2 if args.get("bidirectional") else 1) * args.get("num_layers", 1)
            batch = (x[0 if args.get("batch_first") else 1],) if len(x) == 3 else ()
            h_out = args.get("proj_size") or 3
            h = (d,) + batch + (rng.choice([h_out, 7]),)
            return [x, [h, (d,) + batch + (3,)] if kind == "LSTM" else h]
        return [x]
    sample(kind, rng, 60, rnn_inputs, input_size=[OMIT, 4], hidden_size=[3],
           num_layers=[1, 2], bias=[True, False], batch_first=[False, True],
           dropout=[0.0, 0.5], bidirectional=[False, True], **extra)
    for x in [("N", 4), (4,), ("N", 5)]:
        grid(kind + "Cell", [[x]], input_size=[OMIT, 4], hidden_size=[3], bias=[True, False])
    h = ("N", 3)
    case(kind + "Cell", dict(hidden_size=3), ("N", 4), [h, h] if kind == "LSTM" else h)


def mha_inputs(rng, args):
    e, bf = args.get("embed_dim", 8), args.get("batch_first", False)
    kd, vd = args.get("kdim") or e, args.get("vdim") or e
    if rng.random() < 0.2:
        return [(5, e), (6, kd), (6, vd)]
    lay = (lambda s, f: ("N", s, f)) if bf else (lambda s, f: (s, "N", f))
    return [lay(5, e), lay(6, kd), lay(rng.choice([6, 6, 7]), vd)]


sample("MultiheadAttention", rng, 60, mha_inputs, embed_dim=[OMIT, 8], num_heads=[1, 2, 3],
       bias=[True, False], add_bias_kv=[False, True], add_zero_attn=[False, True],
       kdim=[None, 8, 5], vdim=[None, 6], batch_first=[False, True])
case("MultiheadAttention", dict(num_heads=2), (5, "N", 8))
LAYER = dict(dim_feedforward=[16], nhead=[2, 3], batch_first=[False, True], norm_first=[False],
             bias=[True, False], activation=["relu", "gelu"], d_model=[OMIT, 8])
grid("TransformerEncoderLayer", [[(5, "N", 8)], [(5, 8)]], **LAYER)
grid("TransformerDecoderLayer", [[(5, "N", 8), (6, "N", 8)], [(5, 8), (6, 8)]], **LAYER)
case("TransformerDecoderLayer", dict(nhead=2), (5, "N", 8), (6, "N", 4))
for norm in (None, {"type": "LayerNorm"}, {"type": "LayerNorm", "normalized_shape": 8}):
    for layers in (1, 2):
        layer = {"nhead": 2, "dim_feedforward": 16}
        case("TransformerEncoder", dict(encoder_layer={"type": "TransformerEncoderLayer", **layer},
                                        num_layers=layers, norm=norm), (5, "N", 8))
        case("TransformerDecoder", dict(decoder_layer={"type": "TransformerDecoderLayer", **layer},
                                        num_layers=layers, norm=norm), (5, "N", 8), (4, "N", 8))
case("TransformerEncoder", dict(encoder_layer={"type": "TransformerEncoderLayer", "nhead": 3},
                                num_layers=1), (5, "N", 8))
for args in [dict(nhead=2, num_encoder_layers=1, num_decoder_layers=2, dim_feedforward=16),
             dict(d_model=8, nhead=4, num_encoder_layers=2, num_decoder_layers=1,
                  dim_feedforward=8, bias=False, batch_first=True),
             dict(nhead=3, num_encoder_layers=1, num_decoder_layers=1)]:
    case("Transformer", args, (5, "N", 8), (4, "N", 8))
case("Transformer", dict(nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                         dim_feedforward=8), (5, 8), (4, 8))

for module, x in [({"type": "Linear", "out_features": 4}, ("N", 3)),
                  ({"type": "Conv2d", "out_channels": 4, "kernel_size": 3}, ("N", 2, 5, 5)),
                  ({"type": "ConvTranspose2d", "out_channels": 4, "kernel_size": 2}, ("N", 3, 3, 3)),
                  ({"type": "Linear", "out_features": 4, "bias": False}, ("N", 3))]:
    grid("weight_norm", [[x]], module=[module], dim=[OMIT, 1, None, -1, -2, 5], name=[OMIT])
    grid("spectral_norm", [[x]], module=[module], dim=[None, 1], name=[OMIT])
for layers, x in [([{"type": "Linear", "out_features": 8}, {"type": "ReLU"}, {"type": "Linear", "out_features": 2}],
                   ("N", 3)),
                  ([{"type": "Conv2d", "out_channels": 4, "kernel_size": 3}, {"type": "BatchNorm2d"},
                    {"type": "Flatten"}, {"type": "Linear", "out_features": 5}], ("N", 2, 6, 6)),
                  ([{"type": "Linear", "in_features": 7, "out_features": 4}], ("N", 3)),   # torch refuses too
                  ([{"type": "LSTM", "hidden_size": 4, "batch_first": True}], ("N", 5, 3))]:
    case("Sequential", {"layers": layers}, x)
case("weight_norm", dict(module={"type": "Linear", "out_features": 4}, name="bias"), ("N", 3))
case("weight_norm", dict(module={"type": "Linear", "out_features": 4}, name="wieght"), ("N", 3))
case("weight_norm", dict(module={"type": "LSTM", "hidden_size": 4}, name="weight_hh_l0"), ("N", 2, 3))

# --- functional ops
X3 = [("N", 4, 6)]
for name in ELEMENTWISE:
    for x in [("N", 4, 6), ("N",), (2, 3, 4, 5)]:
        case(name, {"min": 0.0} if name == "clamp" else {"dim": -1} if "softmax" in name else {}, x)
for name, args in [("leaky_relu", {"negative_slope": 0.2}), ("gelu", {"approximate": "tanh"}),
                   ("elu", {"alpha": 2.0}), ("softplus", {"beta": 2.0}), ("softmax", {"dim": 3}),
                   ("log_softmax", {"dim": 1}), ("clamp", {"min": -1, "max": 1}),
                   ("dropout", {"p": 0.3}), ("relu", {"inplace": False})]:
    case(name, args, ("N", 4, 6))
grid("flatten", [X3, [("N", 2, 3, 4)], [(5,)]], start_dim=[OMIT, 0, 2, -2], end_dim=[OMIT, 1, -1])
for name in ("reshape", "view"):
    grid(name, [X3], shape=[["N", -1], [-1, 6], ["N", 2, -1, 3], ["N", 24], [6, 4],
                            ["N", -1, 5], [-1], [2, -1, -1], [4, 6, 2], ["N", 6, 4], [-1, 4, 6]])
    grid(name, [[(2, 3, 4)]], shape=[[-1, 6], [6, 4], [4, -1], [5, -1], [-1], [2, 3, 2, 2]])
grid("permute", [X3], dims=[[0, 2, 1], [2, 1, 0], [-1, 0, 1], [0, 1], [0, 0, 1]])
grid("transpose", [X3, [(2, 3)]], dim0=[0, -1, 2], dim1=[1, -2, 3])
grid("unsqueeze", [X3], dim=[0, 3, -1, -4, 4])
grid("squeeze", [[("N", 1, 6, 1)], [(1, 3)]], dim=[None, 1, -1, 0, [1, 3], 5])
for name in ("cat", "stack"):
    grid(name, [[("N", 3, 4), ("N", 5, 4)], [("N", 3, 4), ("N", 3, 4), ("N", 3, 4)],
                [("N", 3, 4), ("N", 3)], [(2, 3), (4, 3)]], dim=[OMIT, 1, -1, 2, 3])
for name in ("add", "sub", "mul", "div"):
    for xs in [[("N", 3, 4), (4,)], [("N", 1, 4), (5, 1)], [("N", 3, 4), ("N", 3, 5)],
               [("N", 3), (1, 3), (1, 1)], [(2, 3), (3, 2)]]:
        case(name, {}, *xs)
for xs in [[(3,), (3,)], [(2, 3), (3,)], [(3,), (3, 4)], [("N", 2, 3), (3, 4)],
           [("N", 1, 2, 3), (5, 3, 4)], [(2, 3), (4, 5)], [("N", 3, 4), ("N", 4, 2), (2,)]]:
    case("matmul", {}, *xs)
for name in ("mean", "sum", "amax", "amin"):
    grid(name, [X3], dim=[None, 1, -1, [0, 2], [1, 1], 3], keepdim=[False, True])
grid("chunk", [[("N", 7, 4)]], chunks=[1, 2, 3, 7, 9], dim=[1, -1, 2])
for index in (0, 1, -1, 2):
    case("item", {"index": index}, [("N", 4), ("N", 5)])
case("item", {"index": 1}, [("N", 4), [(1, "N", 3), (1, "N", 3)]])
for at in ["[:, -1, :]", "[..., 0]", "[:, None]", "[0]", "[:, 1:3]", "[:, ::2, 1:-1]",
           "[..., 2:, None, 1]", "[:, :, :, :]", "[:, 9]", "[:, -5]", "[:, 10:]", "[0,]"]:
    case("slice", {"at": at}, ("N", 5, 6))
SPLITS = [1, 2, 3, 7, 9, 0, [3, 4], [4], [2, 0, 2], [7, 0], [1, 1]]
grid("split", [[("N", 7, 4)]], dim=[1, -1, 2], split_size_or_sections=SPLITS)
grid("split", [[(7, 0)], [(5,)]], dim=[OMIT, 0, -1], split_size_or_sections=SPLITS)
grid("split", [[("N", 7)]], dim=[OMIT, 0], split_size_or_sections=[2, [2, 2]])   # the batch: torch runs, not at every N
grid("unflatten", [[("N", 12, 5)]], dim=[0, 1, -2, 2],
     sizes=[[3, 4], [2, -1], [-1], [5, 1], [5, 3], [-1, -1], [1, -1], [12, 1, 1], [-1, 0], [0, 5]])
grid("expand", [[("N", 1, 4)], [(1, 3)]], size=[[-1, 3, 4], [-1, -1, -1], [2, -1, 3, -1], [-1, 0, 4], [-1, 4],
                                               [-1, 2, 5], [-1, -1, 4, 4], [2, 1, 3], [5, 3], [-1, 1, 1, 4]])
grid("repeat_interleave", [[("N", 3, 4)], [(2, 3)], [("N",)]], repeats=[0, 1, 3], dim=[None, 0, 1, -1, 2])
for name in ("tril", "triu"):
    grid(name, [[("N", 4, 5)], [(3, 3)], [("N",)], [("N", 2, 3, 3)]], diagonal=[OMIT, 0, 1, -2, 9])
for xs in [[("N", 3, 4), ("N", 3, 4)], [("N", 3, 4), (4,)], [(4,), ("N", 3, 4)], [("N", 3, 4), (1, 4)],
           [("N", 3, 4), (3,)], [("N", 3, 4), (2, 3, 4)]]:
    grid("masked_fill", [xs], value=[0, -1.5, -math.inf])
for xs in [[("N", 3, 4)] * 3, [(4,), ("N", 3, 4), (1, 4)], [("N", 1, 4), (3, 1), ("N", 3, 4)],
           [(3, 4), (2, 3, 4), (4,)], [("N", 3, 4), ("N", 3, 5), ("N", 3, 4)]]:
    case("where", {}, *xs)
Q, K, V = ("N", 2, 5, 8), ("N", 2, 6, 8), ("N", 2, 6, 3)
for qkv in [(Q, K, V), ((5, 8), (6, 8), (6, 3)), (Q, (1, 2, 6, 8), (6, 3)), ((5, 8), ("N", 6, 8), ("N", 6, 3)),
            (("N", 1, 5, 8), (2, 6, 8), (2, 6, 3)), (Q, ("N", 2, 6, 7), V), (Q, K, ("N", 2, 7, 3)),
            (Q, ("N", 3, 6, 8), ("N", 3, 6, 3)), ((8,), (6, 8), (6, 3)), (Q, (2, 6, 8), V)]:
    grid("scaled_dot_product_attention", [list(qkv)], is_causal=[OMIT, True], scale=[OMIT, 0.5],
         dropout_p=[OMIT, 0.25, 1.5])
for mask in [(5, 6), ("N", 1, 5, 6), (6,), (), (1, 2, 1, 1), (5, 1), (2, 5, 6), (3, 1, 5, 6), (5, 7), (1, 1, 1, 5, 6)]:
    grid("scaled_dot_product_attention", [[Q, K, V, mask]], is_causal=[OMIT, True])
for x in [("N", 5, 3), ("N",), (4, 2)]:
    grid("arange", [[x]], dim=[0, 1, -1, 2, -3])
for value in [3, 2.5, True, [], [[]], [1, 2, 3], [[1, 0], [0, 1]], [[1.5, 2], [3, 4]], [[True], [False]],
              [True, 2], [[1, 2], [3]], [[1, 2], 3], [[[1], [2]], [[3], [4]]], [math.inf, 1]]:
    grid("constant", [[("N", 3)]], value=[value], dtype=[OMIT, "float32", "long", "bool", "int32"])
case("constant", {"value": [2 ** 40], "dtype": "int32"}, ("N", 3))
case("constant", {"value": [math.inf], "dtype": "int64"}, ("N", 3))


@pytest.mark.parametrize("type_name", sorted(CASES))
def test_rule_matches_torch(type_name):
    problems = []
    for args, inputs in CASES[type_name]:
        diff = compare(type_name, args, inputs)
        if diff:
            problems.append(f"{type_name}({args}) on {inputs}: {diff}")
    assert not problems, f"{len(problems)} of {len(CASES[type_name])} cases differ:\n" + \
        "\n".join(problems[:15])


def test_every_rule_is_tested():
    assert set(CASES) == set(RULES), (
        f"rules without oracle cases: {sorted(set(RULES) - set(CASES))}; "
        f"cases without a rule: {sorted(set(CASES) - set(RULES))}")


def test_the_cases_include_rejections():
    # The oracle must see torch reject, not only accept (else "rule rejects too" is untested).
    rejected = sum(isinstance(run_torch(t, torch_args(t, a, i), i), Exception)
                   for t in ("Conv2d", "GroupNorm", "Linear", "MaxPool2d") for a, i in CASES[t])
    assert rejected >= 10


@pytest.mark.parametrize("type_name, args, inputs", [
    ("Conv2d", dict(in_channels=1, out_channels=4, kernel_size=7), [("N", 1, 5, 5)]),
    ("Conv1d", dict(out_channels=4, kernel_size=3, dilation=3), [("N", 1, 6)]),
    ("GroupNorm", dict(num_groups=4, num_channels=6), [("N", 6, 3)]),
    ("Linear", dict(in_features=5, out_features=2), [("N", 6)]),
    ("MaxPool2d", dict(kernel_size=2, padding=2), [("N", 3, 8, 8)]),
    ("MultiheadAttention", dict(embed_dim=8, num_heads=3), [(5, "N", 8)]),
    ("Embedding", dict(num_embeddings=4, embedding_dim=2, padding_idx=9), [("N", 3)]),
])
def test_torch_rejects_and_so_does_the_rule(type_name, args, inputs):
    assert isinstance(run_torch(type_name, torch_args(type_name, args, inputs), inputs), Exception)
    with pytest.raises(ShapeError):
        infer(type_name, args, inputs)


def test_cases_are_many():
    assert sum(map(len, CASES.values())) > 1500
