"""Every example in docs/spec-format.md and the README is a spec that validates and builds."""
import re
from pathlib import Path

import pytest

import specbuild
from specbuild.compiler.compile import build_models

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


def test_documented_forward_matches_the_compiler():
    text = (ROOT / "docs" / "spec-format.md").read_text()
    first_spec = EXAMPLES[0].values[0]
    code = specbuild.build_model(first_spec).code
    for line in ("fc1 = self.fc1(x)", "relu_1 = torch.relu(fc1)", "fc2 = self.fc2(relu_1)", "return fc2"):
        assert line in code and line in text
