"""Every shipped spec against the guide's own module, as an oracle.

Each model of the guide (`pytorch-fundamentals.md`) is written out below the way
the guide writes it, with only the guide bugs the spec fixes fixed the same way
(marked FIXED).  For each spec: the oracle's state_dict loads into
`build_model(spec)` with strict=True (same parameter names and shapes), both
give the same outputs in eval mode, and the spec's parameter count is the
oracle's and the one shape inference reports before any weight exists.
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import torch
import torch.nn as nn

from specbuild.compiler.compile import build_model
from specbuild.cli.guide_map import ARCHITECTURES, HEADINGS, SPEC_DOCS
from specbuild.spec.validate import check

SPECS = Path(__file__).resolve().parent.parent / "specs"
BATCH = 3

# torch.nn.utils.weight_norm is deprecated in favour of the parametrization, but it is what the
# guide (and so the spec) uses; its FutureWarning is expected here.
pytestmark = pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")


from guide_modules import (  # noqa: E402  (tests/ is on sys.path under pytest)
    BatchNormModel,
    LayerNormModel,
    InstanceNormModel,
    GroupNormModel,
    WeightNormModel,
    FNN,
    CNN,
    RNN,
    LSTM,
    GRU,
    Transformer,
    GuideTransformer,
    Autoencoder,
    Generator,
    Discriminator,
    MultiInputModel,
    SingleOutputModel,
    MultiOutputModel,
    EncoderDecoder,
    AttentionModel,
    DropoutModel,
    EmbeddingModel,
)


def image(b):
    return (torch.randn(b, 1, 28, 28),)


def vector(n):
    return lambda b: (torch.randn(b, n),)


def sequence(length, dim):
    return lambda b: (torch.randn(b, length, dim),)


@dataclass
class Case:
    spec: str
    oracle: Callable[..., nn.Module]
    inputs: Callable[[int], tuple]
    args: dict = field(default_factory=dict)        # the oracle's constructor arguments = spec params
    extra: dict = field(default_factory=dict)       # further spec params (seq_len), matching `inputs`
    guide_args: dict = field(default_factory=dict)  # the guide's own values, the spec's defaults
    network: str | None = None

    @property
    def overrides(self) -> dict:
        return {**self.args, **self.extra}


RECURRENT_SMALL = {"input_size": 3, "hidden_size": 20, "output_size": 2}
RECURRENT_GUIDE = {"input_size": 1, "hidden_size": 50, "output_size": 1}
SEQUENCE_SMALL = {"input_dim": 32, "num_heads": 4}

CASES = [
    Case("batch_norm", BatchNormModel, image),
    Case("layer_norm", LayerNormModel, image),
    Case("instance_norm", InstanceNormModel, image),
    Case("group_norm", GroupNormModel, image),
    Case("weight_norm", WeightNormModel, image),
    Case("fnn", FNN, image),
    Case("cnn", CNN, image),
    Case("rnn", RNN, sequence(7, 3), RECURRENT_SMALL, {"seq_len": 7}, RECURRENT_GUIDE),
    Case("lstm", LSTM, sequence(7, 3), RECURRENT_SMALL, {"seq_len": 7}, RECURRENT_GUIDE),
    Case("gru", GRU, sequence(7, 3), RECURRENT_SMALL, {"seq_len": 7}, RECURRENT_GUIDE),
    Case("transformer", Transformer, sequence(5, 32), {**SEQUENCE_SMALL, "num_layers": 2}, {"seq_len": 5},
         {"input_dim": 512, "num_heads": 8, "num_layers": 6}),
    Case("autoencoder", Autoencoder, image),
    Case("gan", Generator, vector(100), network="generator"),
    Case("gan", Discriminator, vector(784), network="discriminator"),
    Case("multi_input", MultiInputModel, lambda b: (torch.randn(b, 1, 28, 28), torch.randn(b, 10))),
    Case("single_output", SingleOutputModel, vector(10)),
    Case("multi_output", MultiOutputModel, image),
    Case("encoder_decoder", EncoderDecoder, image),
    Case("attention", AttentionModel, sequence(5, 32), SEQUENCE_SMALL, {"seq_len": 5},
         {"input_dim": 512, "num_heads": 8}),
    Case("dropout", DropoutModel, image),
    Case("embedding", EmbeddingModel, lambda b: (torch.randint(0, 1000, (b, 10)),)),
]
IDS = [c.spec + (f"-{c.network}" if c.network else "") for c in CASES]


def path(case: Case) -> Path:
    return SPECS / f"{case.spec}.yaml"


def perturbed(module: nn.Module) -> nn.Module:
    """Break the constant initialisations (norm weights 1, biases 0, running stats 0/1), so a
    weight loaded into the wrong place shows."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.normal_(0, 0.2)
            elif name.endswith("running_var"):
                b.uniform_(0.5, 1.5)
    return module


def as_tuple(out) -> tuple:
    if isinstance(out, dict):
        return tuple(out[k] for k in sorted(out))
    return out if isinstance(out, tuple) else (out,)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- tests --------------------------------------------------------------------------------

def test_every_shipped_spec_has_an_oracle():
    """The guide's specs here; the real architectures have theirs in test_architectures.py."""
    from test_architectures import REAL
    assert sorted({c.spec for c in CASES}) == sorted(p.stem for p in SPECS.glob("*.yaml") if p.stem not in ARCHITECTURES)
    assert sorted(REAL) == sorted(ARCHITECTURES)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_spec_computes_what_the_guide_module_computes(case):
    torch.manual_seed(0)
    oracle = perturbed(case.oracle(**case.args)).eval()
    model = build_model(path(case), network=case.network, overrides=case.overrides).eval()
    model.load_state_dict(oracle.state_dict(), strict=True)
    x = case.inputs(BATCH)
    with torch.no_grad():
        want, got = as_tuple(oracle(*x)), as_tuple(model(*x))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_parameter_count_is_the_oracles_and_shape_inferences(case):
    checked = check(path(case), overrides=case.overrides)
    network = case.network or next(iter(checked.graphs.networks))
    inferred = sum(s.params for s in checked.shapes[network].values())
    model = build_model(checked, network=case.network)
    assert n_params(model) == inferred == n_params(case.oracle(**case.args))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_guide_sizes_by_default(case):
    """With no overrides a spec has the guide's sizes (counted on the meta device: no memory)."""
    checked = check(path(case))
    network = case.network or next(iter(checked.graphs.networks))
    inferred = sum(s.params for s in checked.shapes[network].values())
    with torch.device("meta"):
        model = build_model(checked, network=case.network)
        oracle = case.oracle(**case.guide_args)
    shapes = {k: tuple(v.shape) for k, v in oracle.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes
    assert n_params(model) == inferred == n_params(oracle)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_inferred_output_shapes_are_torchs(case):
    checked = check(path(case), overrides=case.overrides)
    network = case.network or next(iter(checked.graphs.networks))
    outputs = checked.graphs.networks[network].output_names()
    model = build_model(checked, network=case.network).eval()
    with torch.no_grad():
        got = as_tuple(model(*case.inputs(BATCH)))
    for name, tensor in zip(outputs, got):
        want = tuple(BATCH if d == "N" else d for d in checked.shapes[network][name].output)
        assert tuple(tensor.shape) == want, name


def test_shipped_specs_validate_without_warnings():
    for spec in sorted(SPECS.glob("*.yaml")):
        assert check(spec).warnings == [], spec.name


@pytest.mark.parametrize("spec,guide", [("transformer", GuideTransformer),
                                        ("attention", lambda **kw: AttentionModel(**kw, batch_first=False))])
def test_batch_first_fix_keeps_names_and_shapes(spec, guide):
    """The guide's own module (batch_first False; the Transformer keeps its unused template) has
    the spec's parameters and shapes, plus, for the Transformer, only transformer_layer.*."""
    case = next(c for c in CASES if c.spec == spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # torch: nested tensors need batch_first
        with torch.device("meta"):
            original = guide(**case.args)
    model = build_model(path(case), overrides=case.overrides)
    theirs = {k: tuple(v.shape) for k, v in original.state_dict().items() if not k.startswith("transformer_layer.")}
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == theirs
    dropped = n_params(original) - n_params(model)
    assert dropped == (sum(p.numel() for p in original.transformer_layer.parameters()) if spec == "transformer" else 0)


@pytest.mark.parametrize("spec", ["transformer", "attention"])
def test_the_mean_no_longer_mixes_samples(spec):
    """The guide's mean over dim 1 with batch_first False averaged over the batch: one sample's
    output changed with the others.  In the spec each sample's output is its own."""
    case = next(c for c in CASES if c.spec == spec)
    torch.manual_seed(0)
    model = build_model(path(case), overrides=case.overrides).eval()
    x = case.inputs(BATCH)[0]
    with torch.no_grad():
        alone = model(x[:1])
        together = model(torch.cat([x[:1], 10 * torch.randn_like(x[1:])]))[:1]
    torch.testing.assert_close(together, alone)


# --- the guide map ----------------------------------------------------------------------

# the guide lives beside the repository (shared/seed/), or where SPECBUILD_GUIDE says
GUIDE = Path(os.environ.get("SPECBUILD_GUIDE") or SPECS.parent.parent / "shared" / "seed" / "pytorch-fundamentals.md")


def test_guide_map_names_every_spec_and_only_specs():
    shipped = {p.stem for p in SPECS.glob("*.yaml")}
    assert set(HEADINGS.values()) | set(ARCHITECTURES) == shipped
    assert set(SPEC_DOCS) | set(ARCHITECTURES) == shipped and not set(SPEC_DOCS) & set(ARCHITECTURES)
    for name, entry in SPEC_DOCS.items():
        assert entry["summary"] and isinstance(entry["deviations"], tuple), name


def test_specs_readme_lists_every_heading_and_spec():
    readme = (SPECS / "README.md").read_text()
    for heading, spec in HEADINGS.items():
        assert f"| {heading} | [`{spec}`]({spec}.yaml) |" in readme, heading
    for spec in ARCHITECTURES:
        assert f"| [`{spec}`]({spec}.yaml) |" in readme, spec


@pytest.mark.skipif(not GUIDE.exists(), reason="the guide is not in this checkout")
def test_guide_map_covers_every_heading_of_sections_1_to_4():
    text = GUIDE.read_text()
    body = text[text.index("### **1."):text.index("### **5.")]
    headings = re.findall(r"^#### (.+?)\s*$", body, flags=re.M)
    headings.append(re.search(r"^### \*\*(Complete Example[^*]*)\*\*", text, flags=re.M).group(1))
    assert sorted(headings) == sorted(HEADINGS)
