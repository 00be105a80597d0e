"""Argument values torch refuses are refused at validation, at the argument's line.

Where each constraint lives: JSON Schema bounds in the argument's own schema (catalog_gen's
_LAYER_BOUNDS and _OPTIMIZER_BOUNDS for torch's classes, registry.py for the tensor functions,
spec/schema.py for `train:` and torch's 64-bit integers), so the checked-in schema says them too;
what is between arguments in registry.ARG_RELATIONS; NaN, which JSON has not, is no number to the
validator.  The second half shows torch refusing each constraint's far side (and, where a small
input allows, building its near side), so that nothing is refused that torch would take.
"""
from __future__ import annotations

import fnmatch
import json
import math
import warnings

import jsonschema
import pytest

import specbuild
from specbuild import catalog_gen, registry
from specbuild.spec.schema import INT64, load_installed

from conftest import REPO
from refusals import assert_refused, parametrize

torch = pytest.importorskip("torch")

X = "specbuild: 1\nname: m\ninputs: {x: [3, 4]}\nlayers:\n"
SEQ = "specbuild: 1\nname: m\ninputs: {x: [3, 8]}\nlayers:\n"
TRAIN = "specbuild: 1\nname: m\ninputs: {x: [4]}\nlayers:\n  - {type: Linear, out_features: 2}\ntrain:\n"
INT64_HINT = "torch takes integers from -9,223,372,036,854,775,808 to 9,223,372,036,854,775,807"

# (case id, spec text, the first line of the error after "FILE:")
CASES = [
    ("mean-keepdim-without-dim", X + "  - {type: mean, keepdim: true}\n",
     "5:18: layers[0].keepdim (mean_0): `keepdim` needs `dim`: torch.mean takes keepdim only with dims "
     "— name the dims to reduce, e.g. `dim: [1, 2]`, or drop keepdim"),
    ("mean-keepdim-false-without-dim", X + "  - {type: mean, keepdim: false}\n",
     "5:18: layers[0].keepdim (mean_0): `keepdim` needs `dim`: torch.mean takes keepdim only with dims "
     "— name the dims to reduce, e.g. `dim: [1, 2]`, or drop keepdim"),
    ("sum-keepdim-dim-null", X + "  - {type: sum, dim: null, keepdim: true}\n",
     "5:28: layers[0].keepdim (sum_0): `keepdim` needs `dim`: torch.sum takes keepdim only with dims "
     "— name the dims to reduce, e.g. `dim: [1, 2]`, or drop keepdim"),
    ("lppool1d-kernel-as-list", SEQ + "  - {type: LPPool1d, norm_type: 2, kernel_size: [2]}\n",
     "5:36: layers[0].kernel_size (lppool1d_0): `kernel_size` for LPPool1d must be an integer <= 2,147,483,647, "
     "not a list"),
    ("number-argument-beyond-int64", X + "  - {type: Softplus, threshold: 100000000000000000000}\n",
     f"5:22: layers[0].threshold (softplus_0): `threshold` for Softplus is 100000000000000000000, out of the range "
     f"of torch's 64-bit integers — {INT64_HINT}"),
    ("squeeze-dim-twice", X + "  - {type: squeeze, dim: [1, 1]}\n",
     "5:21: layers[0].dim (squeeze_0): `dim` for squeeze lists an item twice: [1, 1] — list each once"),
    ("conv-padding-beyond-int64", SEQ + "  - {type: Conv1d, out_channels: 2, kernel_size: 3, padding: 100000000000000000000}\n",
     f"5:53: layers[0].padding (conv1d_0): `padding` for Conv1d is 100000000000000000000, out of the range of "
     f"torch's 64-bit integers — {INT64_HINT}"),
    ("conv-stride-beyond-int64", SEQ + "  - {type: Conv1d, out_channels: 2, kernel_size: 3, stride: [9223372036854775808]}\n",
     f"5:62: layers[0].stride[0] (conv1d_0): `stride` for Conv1d is 9223372036854775808, out of the range of "
     f"torch's 64-bit integers — {INT64_HINT}"),
    ("pool-stride-beyond-int32", SEQ + "  - {type: AvgPool1d, kernel_size: 2, stride: 2147483648}\n",
     "5:39: layers[0].stride (avgpool1d_0): `stride` for AvgPool1d must be an integer <= 2,147,483,647, not 2147483648"),
    ("input-size-beyond-int64", "specbuild: 1\nname: m\ninputs: {x: [100000000000000000000]}\nlayers:\n  - {type: relu}\n",
     f"3:14: inputs.x[0]: `x` is 100000000000000000000, out of the range of torch's 64-bit integers — {INT64_HINT}"),
    ("rrelu-lower-above-upper", X + "  - {type: RReLU, lower: 0.5, upper: 0.1}\n",
     "5:19: layers[0].lower (rrelu_0): `lower` (0.5) for RReLU must be at most `upper` (0.1), both finite "
     "— e.g. lower: 0.125, upper: 0.333 (torch's defaults)"),
    ("rrelu-nested-upper-below-default-lower", X + "  - type: Sequential\n    layers:\n      - {type: RReLU, upper: 0.1}\n",
     "7:23: layers[0].layers[0].upper (sequential_0): `lower` (0.125) for RReLU must be at most `upper` (0.1), "
     "both finite — e.g. lower: 0.125, upper: 0.333 (torch's defaults)"),
    ("rrelu-infinite", X + "  - {type: RReLU, lower: -.inf}\n",
     "5:19: layers[0].lower (rrelu_0): `lower` (-inf) for RReLU must be at most `upper` (0.3333333333333333), "
     "both finite — e.g. lower: 0.125, upper: 0.333 (torch's defaults)"),
    ("dropout-nan", X + "  - {type: Dropout, p: .nan}\n",
     "5:21: layers[0].p (dropout_0): `p` for Dropout must be a number, not nan — NaN is no value torch can use here"),
    ("batchnorm-eps-zero", SEQ + "  - {type: BatchNorm1d, eps: 0}\n",
     "5:25: layers[0].eps (batchnorm1d_0): `eps` for BatchNorm1d must be a number > 0, not 0"),
    ("celu-alpha-zero", X + "  - {type: CELU, alpha: 0}\n",
     "5:18: layers[0].alpha (celu_0): `alpha` for CELU must be a number other than 0, not 0"),
    ("lr-negative", TRAIN + "  optimizer: {type: Adam, lr: -1}\n",
     "7:27: train.optimizer.lr (Adam): `lr` for Adam must be a number >= 0, not -1"),
    ("lr-nan", TRAIN + "  optimizer: {type: Adam, lr: .nan}\n",
     "7:27: train.optimizer.lr (Adam): `lr` for Adam must be a number >= 0, not nan — NaN is no value torch can use here"),
    ("adam-beta-one", TRAIN + "  optimizer: {type: Adam, betas: [0.9, 1.0]}\n",
     "7:40: train.optimizer.betas[1] (Adam): `betas` for Adam must be a number >= 0 and < 1, not 1.0"),
    ("embedding-bag-max-sparse", "specbuild: 1\nname: m\ninputs: {x: {shape: [7], dtype: int64}}\nlayers:\n"
     "  - {type: EmbeddingBag, num_embeddings: 10, embedding_dim: 3, mode: max, sparse: true}\n",
     "5:75: layers[0].sparse (embeddingbag_0): `mode: max` takes no `sparse: true` — drop sparse, or use mode sum or mean"),
    ("upsample-size-and-recompute", X + "  - {type: Upsample, size: 8, recompute_scale_factor: true}\n",
     "5:31: layers[0].recompute_scale_factor (upsample_0): `recompute_scale_factor: true` goes with `scale_factor`, "
     "not with `size` — drop recompute_scale_factor, or give scale_factor instead of size"),
    ("sgd-nesterov-without-momentum", TRAIN + "  optimizer: {type: SGD, lr: 0.1, nesterov: true}\n",
     "7:35: train.optimizer.nesterov (SGD): `nesterov: true` needs `momentum` above 0 and `dampening` 0 "
     "(here 0 and 0) — e.g. momentum: 0.9, or drop nesterov"),
    ("clip-grad-norm-negative", TRAIN + "  clip_grad_norm: -1\n",
     "7:3: train.clip_grad_norm: `clip_grad_norm` must be a number >= 0, not -1"),
    ("val-split-above-one", TRAIN + "  data: {path: d.csv, val_split: 1.5}\n",
     "7:23: train.data.val_split: `val_split` must be a number > 0 and < 1, not 1.5"),
    ("loss-weight-negative", TRAIN + "  loss: {type: MSELoss, weight: -2}\n",
     "7:25: train.loss.weight (MSELoss): `weight` for MSELoss must be a number >= 0, not -2"),
    ("min-delta-negative", TRAIN + "  early_stopping: {patience: 2, min_delta: -0.1}\n",
     "7:33: train.early_stopping.min_delta: `min_delta` must be a number >= 0, not -0.1"),
]


@parametrize(CASES)
def test_refused_value(text, first, cli, write_spec):
    assert_refused(text, first, cli, write_spec)


def test_set_of_a_size_beyond_int64_is_refused_where_it_is_used(cli):
    lstm = REPO / "specs" / "lstm.yaml"
    line = next(i for i, text in enumerate(lstm.read_text().splitlines(), 1) if "type: LSTM" in text)
    column = lstm.read_text().splitlines()[line - 1].index("hidden_size:") + 1
    result = cli("validate", lstm, "--set", "hidden_size=100000000000000000000")
    assert result.rc == 1
    assert result.err == (f"{lstm}:{line}:{column}: layers[0].hidden_size (lstm): `hidden_size` for LSTM is "
                          f"100000000000000000000, out of the range of torch's 64-bit integers — {INT64_HINT}\n")


@pytest.mark.parametrize("text", [
    X + "  - {type: amax, keepdim: true}\n",            # amax and amin reduce every dim with dim=()
    X + "  - {type: mean}\n",
    X + "  - {type: Softplus, threshold: 1.0e+20}\n",     # a float that large is fine
    SEQ + "  - {type: LPPool1d, norm_type: 2, kernel_size: 2}\n",
    X + "  - {type: mean, dim: [1, 2], keepdim: true}\n",
    X + "  - {type: RReLU, lower: 0.2, upper: 0.2}\n",
    X + "  - {type: clamp, min: 0, max: .inf}\n",        # infinity is a number torch takes
    SEQ + "  - {type: AvgPool1d, kernel_size: 1, stride: 2147483647}\n",
    TRAIN + "  optimizer: {type: SGD, lr: 0, momentum: 0.9, nesterov: true}\n  clip_grad_norm: 0\n",
])
def test_values_at_the_edge_validate_build_and_run(text):
    assert specbuild.validate(text) == []
    model = specbuild.build_model(text).train()
    spec = specbuild.load_spec(text).data
    shape = next(iter(spec["inputs"].values()))
    model(torch.ones([2, *shape], requires_grad=True))


def test_the_checked_in_schema_says_the_same():
    """An editor reading schemas/spec.schema.json refuses these values as the validator does."""
    validator = jsonschema.Draft202012Validator(load_installed())
    base = {"specbuild": 1, "name": "m", "inputs": {"x": [3, 8]}}
    bad = [{"layers": [{"type": "AvgPool1d", "kernel_size": 2, "stride": 2**31}]},
           {"layers": [{"type": "Conv1d", "out_channels": 2, "kernel_size": 3, "padding": 2**70}]},
           {"layers": [{"type": "squeeze", "dim": [1, 1]}]},
           {"layers": [{"type": "relu"}], "train": {"optimizer": {"type": "Adam", "lr": -1}}},
           {"layers": [{"type": "relu"}], "train": {"clip_grad_norm": -1}},
           {"layers": [{"type": "relu"}], "inputs": {"x": [2**63]}}]
    for spec in bad:
        assert list(validator.iter_errors({**base, **spec})), spec
    assert not list(validator.iter_errors({**base, "layers": [{"type": "AvgPool1d", "kernel_size": 2, "stride": 2**31 - 1}]}))


def test_every_integer_in_the_schema_is_int64():
    def integers(node):
        if isinstance(node, dict):
            kinds = node.get("type") if isinstance(node.get("type"), list) else [node.get("type")]
            if "integer" in kinds:
                yield node
            for value in node.values():
                yield from integers(value)
        elif isinstance(node, list):
            for value in node:
                yield from integers(value)
    found = list(integers(load_installed()["$defs"]))
    assert len(found) > 300
    assert all(INT64["minimum"] <= n["minimum"] and n["maximum"] <= INT64["maximum"] for n in found)


# --- torch refuses what is refused ---------------------------------------------------------------

def _bounds(schema):
    """(bounds) of each number in an argument's schema, as catalog_gen.with_bounds put them."""
    if not isinstance(schema, dict):
        return
    keys = {k: schema[k] for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "not")
            if k in schema and schema[k] not in INT64.values()}
    if keys:
        yield keys
    for key in ("anyOf", "prefixItems"):
        for sub in schema.get(key, []):
            yield from _bounds(sub)
    yield from _bounds(schema.get("items"))


def _far(bounds):
    """A value just beyond the bounds, and one just inside (None where there is no such number)."""
    if "not" in bounds:
        return bounds["not"]["const"], bounds["not"]["const"] + 1
    if "exclusiveMinimum" in bounds:
        return bounds["exclusiveMinimum"], bounds["exclusiveMinimum"] + 0.5
    if "minimum" in bounds:
        return bounds["minimum"] - 0.5, bounds["minimum"]
    if "exclusiveMaximum" in bounds:
        return bounds["exclusiveMaximum"], bounds["exclusiveMaximum"] - 0.5
    return bounds["maximum"] + 1, bounds["maximum"]


def _bounded_args(group):
    return [(name, arg, bounds) for name, entry in sorted(registry.CATALOG[group].items())
            for arg, about in entry["args"].items() for bounds in _bounds(about["schema"])]


# a small input per bounded layer family, and arguments that build it
LAYER_BASE = {"AvgPool": {"kernel_size": 1}, "MaxPool": {"kernel_size": 1}, "LPPool": {"kernel_size": 1, "norm_type": 2},
              "BatchNorm": {"num_features": 2}, "SyncBatchNorm": {"num_features": 2}, "CosineSimilarity": {}, "CELU": {}}
NEAR_RUNS = {"stride", "dilation", "eps", "alpha", "norm_type", "divisor_override"}   # kernel, padding: too big


def _run_layer(name, args):
    family = name.rstrip("123d") if name[-2:-1].isdigit() else name
    cls = getattr(torch.nn, name)
    dims = int(name[-2]) if name[-2].isdigit() else 1
    x = torch.rand([2, 2] + [4] * dims, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = cls(**{**LAYER_BASE[family], **args}).train()
        return module(x, x) if name == "CosineSimilarity" else module(x)


@pytest.mark.parametrize("name, arg, bounds", _bounded_args("layers"),
                         ids=[f"{n}.{a}" for n, a, _ in _bounded_args("layers")])
def test_every_layer_bound_is_torchs(name, arg, bounds):
    far, near = _far(bounds)
    far = int(far) if isinstance(bounds.get("maximum"), int) else far
    with pytest.raises((RuntimeError, ValueError, OverflowError)):
        _run_layer(name, {arg: far})
    if arg in NEAR_RUNS:
        _run_layer(name, {arg: near})


@pytest.mark.parametrize("name, arg, bounds", _bounded_args("optimizers"),
                         ids=[f"{n}.{a}" for n, a, _ in _bounded_args("optimizers")])
def test_every_optimizer_bound_is_torchs(name, arg, bounds):
    cls, default = getattr(torch.optim, name), registry.CATALOG["optimizers"][name]["args"][arg].get("default")
    params = [torch.nn.Parameter(torch.zeros(2, 2))]

    def build(value):
        if isinstance(default, list):     # betas, eps pairs: the bound is on each item; vary the first
            value = [float(value)] + [float(v) if v is not None else None for v in default[1:]]
        return cls(params, **{arg: value})

    far, near = _far(bounds)
    with pytest.raises(ValueError):
        build(far)
    build(near)


# the arguments a scheduler needs besides the bounded one, and a loss's inputs
SCHEDULER_BASE = {"CyclicLR": {"base_lr": 0.01, "max_lr": 0.1}, "OneCycleLR": {"max_lr": 0.1, "total_steps": 20},
                  "CosineAnnealingWarmRestarts": {"T_0": 2}}
SCORES, CLASSES = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])


def _run_scheduler(name, args):
    """Build the scheduler and take a few steps: some of torch's refusals come only at a step."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler = getattr(torch.optim.lr_scheduler, name)(optimizer, **{**SCHEDULER_BASE.get(name, {}), **args})
        for _ in range(6):          # past PolynomialLR's 5 steps, where a negative power divides by 0
            optimizer.step()
            scheduler.step(1.0) if name == "ReduceLROnPlateau" else scheduler.step()


def _run_loss(name, args):
    loss = getattr(torch.nn, name)(**args)
    return loss(SCORES, CLASSES) if name in ("CrossEntropyLoss", "MultiMarginLoss") else loss(SCORES, SCORES)


@pytest.mark.parametrize("name, arg, bounds", _bounded_args("schedulers"),
                         ids=[f"{n}.{a}" for n, a, _ in _bounded_args("schedulers")])
def test_every_scheduler_bound_is_torchs(name, arg, bounds):
    far, near = _far(bounds)
    integer = registry.CATALOG["schedulers"][name]["args"][arg]["schema"].get("type") == "integer"
    far, near = (int(far - 0.5), int(near)) if integer and "minimum" in bounds else (far, near)
    with pytest.raises((ValueError, ZeroDivisionError)):
        _run_scheduler(name, {arg: far})
    _run_scheduler(name, {arg: near})


LOSS_BOUNDS = [(n, a, b) for n, a, b in _bounded_args("losses")]


@pytest.mark.parametrize("name, arg, bounds", LOSS_BOUNDS, ids=[f"{n}.{a}" for n, a, _ in LOSS_BOUNDS])
def test_every_loss_bound_is_torchs(name, arg, bounds):
    far, near = _far(bounds)
    with pytest.raises((RuntimeError, ValueError)):
        _run_loss(name, {arg: far})
    _run_loss(name, {arg: near})


@pytest.mark.parametrize("p, fine", [(1, True), (2, True), (3, False)])
def test_multi_margin_loss_takes_p_1_or_2_as_torch_does(p, fine):
    entry = registry.CATALOG["losses"]["MultiMarginLoss"]["args"]["p"]["schema"]
    assert (p in entry["enum"]) == fine
    if fine:
        _run_loss("MultiMarginLoss", {"p": p})
    else:
        with pytest.raises(ValueError, match="only p == 1 and p == 2"):
            _run_loss("MultiMarginLoss", {"p": p})


def test_the_bound_tables_name_real_arguments():
    for table, groups in ((catalog_gen._LAYER_BOUNDS, ("layers", "losses")), (catalog_gen._OPTIMIZER_BOUNDS,
                          ("optimizers",)), (catalog_gen._SCHEDULER_BOUNDS, ("schedulers",))):
        for pattern, bounds in table.items():
            matched = [(g, n) for g in groups for n in registry.CATALOG[g] if fnmatch.fnmatchcase(n, pattern)]
            assert matched, pattern
            for arg in bounds:
                assert any(arg in registry.CATALOG[g][n]["args"] for g, n in matched), (pattern, arg)


RELATION_BREAKS = {   # type -> what torch does with a value ARG_RELATIONS refuses
    "mean": lambda: torch.mean(torch.ones(2, 3), keepdim=False),     # the keyword alone, even false
    "sum": lambda: torch.sum(torch.ones(2, 3), keepdim=True),
    "RReLU": lambda: torch.nn.RReLU(0.5, 0.1).train()(torch.ones(2, 3)),
    "SGD": lambda: torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1, nesterov=True),
    "Upsample": lambda: torch.nn.Upsample(size=8, recompute_scale_factor=True)(torch.ones(1, 2, 4)),
    "EmbeddingBag": lambda: torch.nn.EmbeddingBag(10, 3, mode="max", sparse=True)(torch.zeros(2, 4, dtype=torch.long)),
}


def test_embedding_bag_max_takes_no_gradient_scaling_either():
    with pytest.raises(ValueError, match="max mode does not support scaling the gradient"):
        torch.nn.EmbeddingBag(10, 3, mode="max", scale_grad_by_freq=True)(torch.zeros(2, 4, dtype=torch.long))


@pytest.mark.parametrize("type_name", sorted(registry.ARG_RELATIONS))
def test_every_relation_is_torchs(type_name):
    with pytest.raises((TypeError, RuntimeError, ValueError)):
        RELATION_BREAKS[type_name]()


def test_rrelu_refuses_infinite_bounds_and_amax_takes_keepdim_alone():
    with pytest.raises(RuntimeError, match="finite"):
        torch.nn.RReLU(-math.inf, 0.3).train()(torch.ones(2, 3))
    assert torch.amax(torch.ones(2, 3), keepdim=True).shape == (1, 1)


def test_lppool1d_takes_no_list_and_softplus_no_wide_int():
    with pytest.raises(TypeError, match="must be Tensor, not (tuple|list)"):
        torch.nn.LPPool1d(2, [2])(torch.ones(1, 3, 8))
    with pytest.raises(OverflowError):
        torch.nn.Softplus(threshold=10**20)(torch.ones(2))


def test_torch_refuses_beyond_int64_and_nan():
    with pytest.raises((TypeError, RuntimeError, OverflowError)):
        torch.nn.functional.pad(torch.ones(1, 3), (2**63, 0))
    with pytest.raises(ValueError):
        torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=math.nan)


@pytest.mark.parametrize("type_name", ["Dropout", "LeakyReLU", "ELU", "leaky_relu", "softplus", "LayerNorm"])
def test_nan_is_refused_for_every_number_argument(type_name):
    entry = registry.lookup(type_name)
    numbers = [arg for arg, about in entry.args.items() if about["schema"].get("type") == "number"]
    assert numbers
    for arg in numbers:
        spec = {"specbuild": 1, "name": "m", "inputs": {"x": [3, 4]}, "layers": [{"type": type_name, arg: math.nan}]}
        with pytest.raises(specbuild.SpecError, match=f"`{arg}` for {type_name} must be a number, not nan"):
            specbuild.validate(spec)


def test_the_catalog_and_schema_are_regenerated():
    """The bounds are in the files editors and `specbuild list` read, not only in the generator."""
    assert registry.CATALOG["layers"]["AvgPool1d"]["args"]["stride"]["schema"]["anyOf"][0]["maximum"] == 2**31 - 1
    schema = json.loads((REPO / "schemas" / "spec.schema.json").read_text())
    assert schema["$defs"]["optimizer.Adam"]["properties"]["lr"]["anyOf"][0] == {"type": "number", "minimum": 0}
