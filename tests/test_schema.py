"""The generated JSON Schema: checked in, current, valid 2020-12, usable by an
editor with plain jsonschema, and in step with the registry; the torch catalog
it is built from matches the installed torch; user types join it."""
from __future__ import annotations

import json

import jsonschema
import pytest

import specbuild
from specbuild import registry
from specbuild.spec import schema
from specbuild.spec.loader import load_spec
from specbuild.shapes.core import Inferred

from conftest import REPO, SHIPPED_SPECS

CHECKED_IN = REPO / "schemas" / "spec.schema.json"


@pytest.fixture(scope="module")
def checked_in() -> dict:
    return json.loads(CHECKED_IN.read_text())


@pytest.fixture(scope="module")
def editor_validator(checked_in):
    return jsonschema.Draft202012Validator(checked_in)


def test_checked_in_schema_is_current():
    fresh = schema.render(schema.build_schema(registry.BUILTIN_TYPES))
    assert CHECKED_IN.read_text() == fresh, (
        "schemas/spec.schema.json is stale: regenerate it with `python -m specbuild.spec.schema` and commit it")


def test_installed_copy_is_the_checked_in_schema(checked_in):
    assert schema.INSTALLED.exists()
    assert json.loads(schema.INSTALLED.read_text()) == checked_in
    assert schema.load_installed() == checked_in


def test_schema_is_valid_2020_12(checked_in):
    assert checked_in["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(checked_in)
    jsonschema.Draft202012Validator.check_schema(schema.build_schema())


def test_every_ref_resolves(checked_in):
    refs = set()

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.add(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(checked_in)
    missing = {r for r in refs if not r.startswith("#/$defs/") or r[len("#/$defs/"):] not in checked_in["$defs"]}
    assert not missing


@pytest.mark.parametrize("spec", SHIPPED_SPECS, ids=[p.name for p in SHIPPED_SPECS])
def test_shipped_spec_validates_with_plain_jsonschema(spec, editor_validator):
    # An editor reads YAML 1.2 (`on:` is a string key): load with specbuild's loader, but
    # validate with nothing but jsonschema and the checked-in file.
    data = load_spec(spec).data
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in editor_validator.iter_errors(data)]
    assert not errors, errors


def test_plain_jsonschema_rejects_what_validate_rejects(editor_validator):
    data = load_spec(REPO / "specs" / "cnn.yaml").data
    for broken in (
        {**data, "layer": data["layers"]},                                   # unknown top-level key
        {**data, "layers": [{"type": "Linear", "out_feature": 3}]},           # unknown argument
        {**data, "layers": [{"type": "Linear", "out_features": "12"}]},       # wrong type
        {**data, "layers": [{"type": "Linear"}]},                             # missing required
        {**data, "specbuild": 2},
        {**data, "train": {**data["train"], "loss": {"type": "CrossEntropyLos"}}},
        {**data, "train": {**data["train"], "metrics": ["acuracy"]}},
    ):
        assert not editor_validator.is_valid(broken)
        with pytest.raises(specbuild.SpecError):
            specbuild.validate(broken)


def test_every_registered_type_has_its_definition(checked_in):
    defs = checked_in["$defs"]
    for name, entry in registry.BUILTIN_TYPES.items():
        definition = defs.get(f"layer.{name}")
        assert definition is not None, f"no layer.{name} in the schema"
        assert set(entry.args) <= set(definition["properties"]), name
        assert definition["additionalProperties"] is False
    dispatched = {branch["if"]["properties"]["type"]["const"] for branch in defs["layer"]["allOf"]}
    assert dispatched == set(registry.BUILTIN_TYPES)
    # and nothing else: no layer.X for a type the registry lacks (a stale, removed type)
    assert {k[len("layer."):] for k in defs if k.startswith("layer.")} == set(registry.BUILTIN_TYPES)


def test_train_catalog_is_in_the_schema(checked_in):
    defs = checked_in["$defs"]
    for group, prefix in (("losses", "loss"), ("optimizers", "optimizer"), ("schedulers", "scheduler")):
        names = registry.catalog_names(group)
        assert names, group
        assert defs[prefix]["properties"]["type"]["enum"] == names
        assert all(f"{prefix}.{n}" in defs for n in names)
    assert defs["train"]["properties"]["metrics"]["items"]["enum"] == list(registry.METRIC_NAMES)


def test_torch_catalog_matches_installed_torch():
    torch = pytest.importorskip("torch")
    catalog_gen = pytest.importorskip("specbuild.catalog_gen")
    shipped = json.loads(catalog_gen.CATALOG_PATH.read_text())
    installed = torch.__version__.split("+")[0]
    if shipped["torch_version"] != installed:
        pytest.skip(f"catalog written for torch {shipped['torch_version']}, torch {installed} installed")
    fresh = catalog_gen.build_catalog()
    assert fresh == shipped, "specbuild/torch_catalog.json is stale: run `python -m specbuild.catalog_gen`"
    assert catalog_gen.render(fresh) == catalog_gen.CATALOG_PATH.read_text()


# --- user types --------------------------------------------------------------------------------

USER_SPEC = """\
specbuild: 1
name: m
inputs:
  x: [8]
layers:
  - {type: Twice, scale: 3}
  - {type: Linear, out_features: 2}
"""


def _twice(scale: int = 2):
    raise AssertionError("validation must not build the layer")


@pytest.fixture
def twice():
    def shape(args, inputs):
        # An Inferred (shape, args, parameter count): a bare shape would make validate build the
        # factory on torch's meta device to count the parameters.
        return Inferred(inputs[0], dict(args), 0)

    entry = specbuild.register_layer("Twice", _twice, args={"scale": {"type": "integer", "minimum": 1}},
                                     shape=shape)
    try:
        yield entry
    finally:
        specbuild.unregister_layer("Twice")
    assert registry.lookup("Twice") is None


def test_unregistered_type_is_refused():
    assert registry.lookup("Twice") is None
    with pytest.raises(specbuild.SpecError) as info:
        specbuild.validate(USER_SPEC)
    assert info.value.line == 6 and "unknown layer type 'Twice'" in info.value.message


def test_registered_type_becomes_valid_and_joins_the_schema(twice, cli, write_spec):
    assert specbuild.validate(USER_SPEC) == []
    result = cli("validate", write_spec(USER_SPEC))
    assert result.rc == 0, result.text

    built = schema.build_schema()
    assert "layer.Twice" in built["$defs"]
    assert any(b["if"]["properties"]["type"]["const"] == "Twice" for b in built["$defs"]["layer"]["allOf"])
    jsonschema.Draft202012Validator.check_schema(built)
    # the built-in schema (and the checked-in file) stay without it
    assert "layer.Twice" not in schema.build_schema(registry.BUILTIN_TYPES)["$defs"]
    # its arguments are checked like a built-in's
    with pytest.raises(specbuild.SpecError) as info:
        specbuild.validate(USER_SPEC.replace("scale: 3", "scale: \"3\""))
    assert info.value.line == 6 and "must be an integer" in str(info.value)
    with pytest.raises(specbuild.SpecError) as info:
        specbuild.validate(USER_SPEC.replace("scale: 3", "scael: 3"))
    assert "did you mean 'scale'" in str(info.value)


def test_registered_type_signature_is_read_when_args_omitted():
    def factory(width: int, gain: float = 1.0, tag="x"):
        raise AssertionError("not built")

    specbuild.register_layer("Widen", factory,
                             shape=lambda args, inputs: Inferred(inputs[0][:-1] + (args["width"],), dict(args), 0))
    try:
        args = schema.build_schema()["$defs"]["layer.Widen"]
        assert args["required"] == ["width"]
        assert set(args["properties"]) >= {"width", "gain", "tag"}
        text = "specbuild: 1\nname: m\ninputs:\n  x: [8]\nlayers:\n  - {type: Widen, width: 4}\n"
        assert specbuild.validate(text) == []
        with pytest.raises(specbuild.SpecError) as info:
            specbuild.validate(text.replace("width: 4", "gain: 2.0"))
        assert "missing required argument 'width'" in str(info.value)
    finally:
        specbuild.unregister_layer("Widen")


def test_unregistered_again_is_refused_again(twice):
    specbuild.unregister_layer("Twice")
    with pytest.raises(specbuild.SpecError) as info:
        specbuild.validate(USER_SPEC)
    assert (info.value.message, info.value.line) == ("unknown layer type 'Twice'", 6)


@pytest.mark.parametrize("name, message", [
    ("os.system", "layer type name 'os.system' must be a Python identifier"),
    ("Linear", "'Linear' is a built-in layer type; choose another name"),
    ("relu", "'relu' is a built-in layer type; choose another name"),
    ("class", "layer type name 'class' must be a Python identifier"),        # a keyword
    ("1abc", "layer type name '1abc' must be a Python identifier"),
    ("", "layer type name '' must be a Python identifier"),
    ("a-b", "layer type name 'a-b' must be a Python identifier"),
])
def test_register_refuses_bad_names(name, message):
    with pytest.raises(ValueError) as info:
        specbuild.register_layer(name, _twice)
    assert str(info.value) == message
    assert registry.lookup(name) is None or name in registry.BUILTIN_TYPES


def test_the_schemas_data_options_are_the_data_loaders():
    from specbuild.data.catalog import DATA_OPTIONS
    from specbuild.spec.schema import build_schema
    data_def = build_schema()["$defs"]["data"]["anyOf"][1]
    assert sorted(data_def["properties"]) == sorted(DATA_OPTIONS)
