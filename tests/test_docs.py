"""Every example in docs/spec-format.md and the README is a spec that validates, builds, and runs:
a forward pass on inputs of the declared shapes and dtypes gives the shapes inference promised.

A block fenced ```yaml NAME (the README's bad.yaml) is a file a shown command reads, often a wrong
spec on purpose: the regex below skips it, and tests/test_doc_outputs.py runs the command on it."""
import re
from pathlib import Path

import pytest
import torch

import specbuild
from specbuild.compiler.compile import build_models
from specbuild.spec.infer import BATCH
from specbuild.spec.validate import check

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "docs" / "spec-format.md", ROOT / "README.md"]


def yaml_examples():
    for doc in DOCS:
        text = doc.read_text()
        for i, match in enumerate(re.finditer(r"```yaml\n(.*?)```", text, re.S)):
            yield pytest.param(match.group(1), id=f"{doc.name}-{i}")


EXAMPLES = list(yaml_examples())


def test_the_docs_have_examples():
    assert len(EXAMPLES) >= 10


@pytest.mark.parametrize("text", EXAMPLES)
def test_example_validates_without_warnings(text):
    assert specbuild.validate(text) == []


@pytest.mark.parametrize("text", EXAMPLES)
def test_example_builds(text):
    models = build_models(text)
    assert models and all(sum(p.numel() for p in m.parameters()) > 0 for m in models.values())


def _integer_bound(checked) -> int:
    """Integer inputs (token ids) must index every Embedding: below the smallest num_embeddings."""
    graphs = list(checked.graphs.networks.values()) + list(checked.graphs.blocks.values())
    sizes = [node.args["num_embeddings"] for graph in graphs for node in graph.nodes.values()
             if isinstance(node.args.get("num_embeddings"), int)]
    return min(sizes, default=2)


def _example_inputs(graph, high: int, batch: int, generator) -> list:
    inputs = []
    for spec_input in graph.inputs.values():
        shape, dtype = (batch, *spec_input.shape), spec_input.torch_dtype()
        if dtype.is_floating_point:
            inputs.append(torch.randn(shape, generator=generator).to(dtype))
        elif dtype == torch.bool:
            inputs.append(torch.randint(0, 2, shape, generator=generator).bool())
        else:
            inputs.append(torch.randint(0, high, shape, generator=generator, dtype=dtype))
    return inputs


@pytest.mark.parametrize("text", EXAMPLES)
def test_example_forward_matches_shape_inference(text):
    batch = 3
    checked = check(text)
    models = build_models(text)
    assert set(models) == set(checked.graphs.networks)
    high = _integer_bound(checked)
    generator = torch.Generator().manual_seed(0)
    for network, graph in checked.graphs.networks.items():
        inputs = _example_inputs(graph, high, batch, generator)
        with torch.no_grad():
            got = models[network].eval()(*inputs)
        if isinstance(graph.outputs, dict):
            assert isinstance(got, dict) and list(got) == list(graph.outputs), network
            pairs = [(graph.outputs[key], got[key]) for key in graph.outputs]
        elif isinstance(graph.outputs, list):
            assert isinstance(got, (tuple, list)) and len(got) == len(graph.outputs), network
            pairs = list(zip(graph.outputs, got))
        else:
            pairs = [(graph.outputs, got)]
        for node, tensor in pairs:
            inferred = checked.shapes[network][node].output
            assert all(isinstance(d, int) or d == BATCH for d in inferred), (node, inferred)
            want = tuple(batch if d == BATCH else d for d in inferred)
            assert isinstance(tensor, torch.Tensor) and tuple(tensor.shape) == want, (network, node, inferred)
            assert torch.isfinite(tensor).all(), (network, node)


def test_documented_forward_matches_the_compiler():
    text = (ROOT / "docs" / "spec-format.md").read_text()
    first_spec = EXAMPLES[0].values[0]
    code = specbuild.build_model(first_spec).code
    for line in ("fc1 = self.fc1(x)", "relu_1 = torch.relu(fc1)", "fc2 = self.fc2(relu_1)", "return fc2"):
        assert line in code and line in text
