"""Property: whatever the spec, `validate()` returns its warnings (a list) or raises
SpecError — never another exception.

Two sources of specs: a strategy that wires random layer types from the registry
with random arguments (mostly of the right kind, often not), random `in:`,
outputs, params/variables, blocks, networks and train sections; and mutations
of the shipped specs, on the data (delete, duplicate, rename keys, change value
types, swap list items, inject strings) and on the YAML text (delete a
character, insert ':' '{' tabs...).  Derandomized, so CI sees the same examples.

Integers stay small (|n| <= 300): a huge `repeat:`/`num_layers:`/`chunks:` makes
shape inference loop without bound, a known problem tested (xfail) in
test_validate_hostile.py, which this file must not trip over.
"""
from __future__ import annotations

import json
import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

import specbuild
from specbuild import Problem, SpecError, registry
from specbuild.spec.loader import load_spec

from conftest import SHIPPED_SPECS

TYPES = sorted(registry.BUILTIN_TYPES)
LOSSES = registry.catalog_names("losses")
OPTIMIZERS = registry.catalog_names("optimizers")
SCHEDULERS = registry.catalog_names("schedulers")
PARAMS = ["h", "w", "k", "n"]


def _settings(n):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def assert_validate_behaves(source, overrides=None):
    try:
        warnings = specbuild.validate(source, overrides=overrides)
    except SpecError as error:
        assert error.problems and all(isinstance(p, Problem) for p in error.problems)
        assert str(error)                       # formatting a problem never fails
        return error
    assert isinstance(warnings, list) and all(isinstance(w, Problem) for w in warnings)
    assert all(w.severity == "warning" for w in warnings)
    return warnings


# --- random values ---------------------------------------------------------------------------------
# A spec is drawn "clean" (every value of the right kind, every name and variable defined: the
# examples reach graph checks and shape inference, with random types, sizes and wiring) or "noisy"
# (wrong types, junk keys, undefined names, anything JSON): about half each.

SMALL_INT = st.integers(-300, 300)
SCALAR = (st.none() | st.booleans() | SMALL_INT | st.floats(allow_nan=True, allow_infinity=True)
          | st.text(max_size=8) | st.sampled_from(["${h}", "${hiden}", "${", "${1x}", "", "x", "N"]))
JSON = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
NAME = st.sampled_from(["x", "y", "a", "b", "fc", "conv", "out", "h"]) | st.from_regex(
    r"[A-Za-z_][A-Za-z0-9_]{0,5}", fullmatch=True)
VARIABLE = st.sampled_from(PARAMS + ["hiden", "1x", ""]).map(lambda n: "${%s}" % n)
CLEAN_VARIABLE = st.sampled_from(PARAMS).map(lambda n: "${%s}" % n)
MODULE_TYPES = sorted(name for name, entry in registry.BUILTIN_TYPES.items() if entry.makes_module)

_CACHE: dict = {}


def _cached(key, make):
    if key not in _CACHE:
        _CACHE[key] = make()        # building strategies is slow; there are few distinct schemas
    return _CACHE[key]


def for_schema(schema, depth=0, clean=False):
    """Values of the kind an argument's schema fragment asks for."""
    if not isinstance(schema, dict) or not schema:
        return st.integers(1, 8) | st.booleans() if clean else JSON
    return _cached((json.dumps(schema, sort_keys=True), depth, clean), lambda: _for_schema(schema, depth, clean))


def _for_schema(schema, depth, clean):
    options = []
    if "enum" in schema:
        options.append(st.sampled_from(schema["enum"]))
    if "const" in schema:
        options.append(st.just(schema["const"]))
    for branch in schema.get("anyOf", []):
        options.append(for_schema(branch, depth, clean))
    ref = schema.get("$ref", "")
    if ref.endswith("nested_layer"):
        options.append(nested_layer(depth + 1, clean) if depth < 2 else st.just({"type": "ReLU"}))
    elif ref.endswith("variable"):
        options.append(CLEAN_VARIABLE if clean else VARIABLE)
    elif ref:
        options.append(NAME)
    kinds = schema.get("type")
    for kind in kinds if isinstance(kinds, list) else [kinds] if kinds else []:
        if kind == "array":
            options.append(st.lists(for_schema(schema.get("items", {}), depth, clean),
                                    min_size=schema.get("minItems", 0), max_size=max(4, schema.get("minItems", 0))))
        elif clean:
            options.append({"integer": st.integers(1, 16) | st.integers(-2, 3), "number": st.floats(0, 1),
                            "boolean": st.booleans(), "null": st.none(),
                            "string": st.sampled_from(["same", "valid", "mean", "sum", "none", "tanh", "relu",
                                                       "zeros", "[0]", "[:, 0]", "[..., 1:]", "weight"]),
                            "object": st.just({})}.get(kind, st.integers(1, 8)))
        else:
            options.append({"integer": st.integers(-2, 64), "number": st.floats(-1, 8), "boolean": st.booleans(),
                            "string": st.text(max_size=6), "null": st.none(),
                            "object": st.dictionaries(st.text(max_size=4), JSON, max_size=2)}.get(kind, JSON))
    if not options:
        return st.integers(1, 8) if clean else JSON
    return st.one_of(*options)


def argument(schema, depth=0, clean=False):
    if clean:
        return for_schema(schema, depth, clean=True)

    def make():
        good = for_schema(schema, depth)
        return st.one_of(good, good, VARIABLE, JSON)     # the right kind mostly, anything now and then
    return _cached(("argument", json.dumps(schema, sort_keys=True), depth), make)


# Extreme numbers YAML can write (ints up to 4300 digits, .inf, .nan); not for the counts that
# shape inference loops over (see the module docstring).
EXTREME = st.sampled_from([1.0, 2.0, -1.0, 0, -1, 2**31, 2**63, 10**30, 10**400, 1e308, -1e308, math.inf, -math.inf, math.nan, 1e-320])
LOOPED_OVER = {"repeat", "num_layers", "num_encoder_layers", "num_decoder_layers", "chunks"}


@st.composite
def layer_args(draw, type_name, depth=0, clean=False):
    entry = registry.lookup(type_name)
    args = {}
    if entry is not None:
        for name, arg in sorted(entry.args.items()):
            if draw(st.integers(0, 9)) < (9 if arg["required"] else 2):
                extreme = name not in LOOPED_OVER and draw(st.integers(0, 14)) == 0
                args[name] = draw(EXTREME if extreme else argument(arg["schema"], depth, clean))
    if not clean and draw(st.integers(0, 9)) == 0:
        args[draw(st.text(max_size=8))] = draw(JSON)       # an unknown argument
    return args


@st.composite
def nested_layer(draw, depth=1, clean=False):
    types = st.sampled_from(MODULE_TYPES) if clean else (
        st.sampled_from(TYPES) | st.sampled_from(["TransformerEncoderLayr", "relu", "x"]))
    type_name = draw(types)
    layer = {"type": type_name, **draw(layer_args(type_name, depth, clean))}
    if not clean and draw(st.integers(0, 9)) == 0:
        layer[draw(st.sampled_from(["in", "name", "repeat", "share"]))] = draw(NAME)
    return layer


@st.composite
def layer_list(draw, known, block_names=(), clean=False):
    layers, known, modules = [], list(known), []
    junk_types = st.sampled_from(["Conv2D", "rellu", "os.system", ""])
    for index in range(draw(st.integers(0 if not clean else 1, 6))):
        types = st.sampled_from(TYPES + list(block_names))
        type_name = draw(types if clean else types | junk_types)
        layer = {"type": type_name, **draw(layer_args(type_name, clean=clean))}
        if draw(st.booleans()):
            layer["name"] = draw(NAME)
        refs = st.sampled_from(known) if known else NAME
        choice = draw(st.integers(0, 9))
        if choice < 2:
            layer["in"] = draw(refs)
        elif choice < 4:
            layer["in"] = draw(st.lists(refs, min_size=1, max_size=3))
        elif choice == 4 and not clean:
            layer["in"] = draw(JSON)
        extra = draw(st.integers(0, 19))
        if extra == 0:
            layer["repeat"] = draw(st.integers(1, 3) if clean else st.integers(0, 3) | JSON)
        elif extra == 1 and (modules or not clean):
            layer = {"share": draw(st.sampled_from(modules) if clean else refs),
                     **({"name": layer["name"]} if "name" in layer else {}),
                     **({"in": layer["in"]} if "in" in layer else {})}
        elif extra == 2 and not clean:
            del layer["type"]
        elif extra == 3 and not clean:
            layer = draw(JSON)                               # not a mapping at all
        layers.append(layer)
        if isinstance(layer, dict):
            name = layer.get("name") or f"{str(layer.get('type', 'layer')).lower()}_{index}"
            known.append(name)
            entry = registry.lookup(layer.get("type"))
            if entry is not None and entry.makes_module and "name" in layer:
                modules.append(name)
    return layers, known


SHAPE = st.lists(st.integers(1, 32) | st.integers(1, 32) | st.integers(1, 32) | st.sampled_from([2**40, 10**400]),
                 min_size=1, max_size=4)
INPUT = st.one_of(SHAPE, SHAPE, st.fixed_dictionaries({"shape": SHAPE}, optional={
    "dtype": st.sampled_from(["float32", "long", "int64", "bool", "float33"])}), JSON,
    st.lists(st.one_of(st.integers(-1, 8), VARIABLE), max_size=3))
CLEAN_INPUT = SHAPE | st.fixed_dictionaries({"shape": SHAPE, "dtype": st.sampled_from(["float32", "long"])})


@st.composite
def graph(draw, block_names=(), as_block=False, clean=False):
    out = {}
    if as_block:
        inputs = draw(st.lists(NAME, min_size=1, max_size=2, unique=True))
        if draw(st.booleans()):
            out["inputs"] = inputs
        inputs = out.get("inputs", ["x"])
    elif clean:
        inputs = out["inputs"] = draw(st.dictionaries(NAME, CLEAN_INPUT, min_size=1, max_size=2))
    else:
        inputs = draw(st.dictionaries(NAME, INPUT, max_size=2))
        if inputs or draw(st.booleans()):
            out["inputs"] = inputs
    layers, known = draw(layer_list(list(inputs), block_names, clean))
    if layers or draw(st.booleans()):
        out["layers"] = layers
    choice = draw(st.integers(0, 5))
    if choice == 1 and known:
        out["outputs"] = draw(st.sampled_from(known))
    elif choice == 2 and known:
        out["outputs"] = draw(st.lists(st.sampled_from(known), min_size=1, max_size=3))
    elif choice == 3 and known:
        out["outputs"] = draw(st.dictionaries(NAME, st.sampled_from(known), min_size=1, max_size=2))
    elif choice == 4 and not clean:
        out["outputs"] = draw(JSON)
    return out, known


@st.composite
def train_section(draw, known, networks=(), clean=False):
    junk = st.nothing() if clean else JSON
    on = st.sampled_from(known) if known else NAME
    loss = st.fixed_dictionaries(
        {"type": st.sampled_from(LOSSES) if clean else st.sampled_from(LOSSES) | st.sampled_from(["CrossEntropyLos"])},
        optional={"on": on, "weight": st.floats(0, 2), "reduction": st.sampled_from(["mean", "sum"])})
    parts = {
        "loss": st.one_of(loss, st.lists(loss, min_size=1, max_size=2), junk),
        "optimizer": st.fixed_dictionaries({"type": st.sampled_from(OPTIMIZERS + ([] if clean else ["Adamm"]))},
                                           optional={"lr": st.floats(0, 1) | junk}),
        "scheduler": st.fixed_dictionaries({"type": st.sampled_from(SCHEDULERS)},
                                           optional={"step_size": st.integers(1, 5), "interval": junk}),
        "metrics": st.lists(st.sampled_from(list(registry.METRIC_NAMES) + ([] if clean else ["acuracy"])),
                            max_size=3),
        "epochs": st.integers(0, 5) | junk,
        "data": st.sampled_from(["mnist", "synthetic"]) | st.fixed_dictionaries(
            {"dataset": st.sampled_from(["mnist", "iris"])}, optional={"batch_size": st.integers(1, 64)}),
        "task": st.sampled_from(["classification", "gan"] + ([] if clean else ["regresion"])),
        "generator": st.sampled_from(networks) if networks else NAME,
        "discriminator": st.sampled_from(networks) if networks else NAME,
        "monitor": st.text(max_size=6),
        "early_stopping": st.fixed_dictionaries({}, optional={"patience": st.integers(1, 3)}),
    }
    if not clean:
        parts["epoch"] = JSON
    return {key: draw(parts[key]) for key in draw(st.lists(st.sampled_from(sorted(parts)), max_size=4, unique=True))}


@st.composite
def specs(draw):
    clean = draw(st.booleans())
    spec = {"specbuild": 1 if clean else draw(st.sampled_from([1, 1, 1, 2, "1", None])), "name": draw(NAME)}
    if not clean and draw(st.integers(0, 9)) == 0:
        del spec[draw(st.sampled_from(["specbuild", "name"]))]
    if clean:
        spec["params"] = {name: draw(st.integers(1, 16)) for name in PARAMS}
    elif draw(st.booleans()):
        spec["params"] = draw(st.dictionaries(st.sampled_from(PARAMS), st.integers(1, 16) | JSON, max_size=3))
    block_names = []
    if draw(st.integers(0, 3)) == 0:
        block_names = draw(st.lists(st.sampled_from(["res", "pair", "stem"] + ([] if clean else ["Linear"])),
                                    min_size=1, max_size=2, unique=True))
        # a block may use the blocks listed after it (not itself, when clean)
        spec["blocks"] = {name: draw(graph(block_names[i + 1:] if clean else block_names, as_block=True,
                                           clean=clean))[0] for i, name in enumerate(block_names)}
    known, networks = [], []
    if draw(st.integers(0, 4)) == 0:
        spec["networks"] = {}
        for name in draw(st.lists(NAME, min_size=1, max_size=2, unique=True)):
            spec["networks"][name], names = draw(graph(block_names, clean=clean))
            known += names
            networks.append(name)
    else:
        body, known = draw(graph(block_names, clean=clean))
        spec.update(body)
    if draw(st.booleans()):
        spec["train"] = draw(train_section(known, networks, clean))
    if not clean and draw(st.integers(0, 9)) == 0:
        spec[draw(st.sampled_from(["layer", "ouputs", "doc", "extra"]))] = draw(JSON)
    return spec


@_settings(550)
@given(specs())
def test_generated_specs(spec):
    assert_validate_behaves(spec)


def _dump(spec) -> str | None:
    try:
        return yaml.safe_dump(spec, sort_keys=False, allow_unicode=True)
    except (yaml.YAMLError, ValueError):
        return None


OVERRIDE = st.dictionaries(st.sampled_from(PARAMS + ["hiden", "train.epochs", "layers", "train.loss.type", "name"]),
                           JSON, max_size=2)


@_settings(300)
@given(specs(), st.one_of(st.none(), OVERRIDE))
def test_generated_specs_as_yaml_text_with_overrides(spec, overrides):
    text = _dump(spec)
    if text is not None:
        assert_validate_behaves(text, overrides=overrides)
    assert_validate_behaves(spec, overrides=overrides)


# --- mutations of the shipped specs ------------------------------------------------------------

SHIPPED = {path.name: load_spec(path) for path in SHIPPED_SPECS}
SHIPPED_NAMES = sorted(SHIPPED)


def test_shipped_specs_are_valid_before_mutation():
    assert "cnn.yaml" in SHIPPED
    for name in SHIPPED_NAMES:
        assert isinstance(specbuild.validate(SHIPPED[name]), list), name


def _paths(value, path=()):
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, path + (index,))


def _get(value, path):
    for key in path:
        value = value[key]
    return value


def _typo(word: str, position: int) -> str:
    if not word:
        return "x"
    position %= len(word)
    return word[:position] + word[position + 1:] if position % 2 else word[:position] + word[position] * 2 + word[position + 1:]


MUTATIONS = ["delete", "duplicate", "rename", "retype", "swap", "inject", "none", "wrap", "unwrap", "typo-value"]


@st.composite
def mutated(draw):
    import copy
    data = copy.deepcopy(SHIPPED[draw(st.sampled_from(SHIPPED_NAMES))].data)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(data) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _get(data, path[:-1]), path[-1]
        op = draw(st.sampled_from(MUTATIONS))
        value = parent[key]
        if op == "delete":
            del parent[key]
        elif op == "duplicate":
            if isinstance(parent, list):
                parent.insert(key, copy.deepcopy(value))
            else:
                parent[draw(st.sampled_from(sorted(map(str, parent))) | st.text(max_size=6))] = copy.deepcopy(value)
        elif op == "rename" and isinstance(parent, dict):
            del parent[key]
            parent[draw(st.just(_typo(str(key), draw(st.integers(0, 50)))) | st.text(max_size=6)
                        | st.integers(0, 3) | st.none())] = value
        elif op == "retype":
            parent[key] = draw(JSON)
        elif op == "swap" and isinstance(parent, list) and len(parent) > 1:
            other = draw(st.integers(0, len(parent) - 1))
            parent[key], parent[other] = parent[other], parent[key]
        elif op == "inject":
            parent[key] = draw(st.text(max_size=10) | st.sampled_from(["${h}", "${hidden}", "os.system", "\t", "{", "N"]))
        elif op == "none":
            parent[key] = None
        elif op == "wrap":
            parent[key] = [value]
        elif op == "unwrap" and isinstance(value, (list, dict)) and value:
            parent[key] = value[0] if isinstance(value, list) else next(iter(value.values()))
        elif op == "typo-value" and isinstance(value, str):
            parent[key] = _typo(value, draw(st.integers(0, 50)))
    return data


@_settings(450)
@given(mutated())
def test_mutated_shipped_specs(data):
    assert_validate_behaves(data)
    text = _dump(data)
    if text is not None:
        assert_validate_behaves(text)


INSERTS = [":", "{", "}", "[", "]", "\t", "-", " ", "  ", "\n", "#", ",", "&a ", "*a", "!!", "!!python/name:os.system ",
           "${", "'", '"', "?", "|", ">", "%", "@", "`", "\\", "\x00", "\ufeff", "é", "<<: ", "---\n", "1e9999"]


@st.composite
def mutated_text(draw):
    text = SHIPPED[draw(st.sampled_from(SHIPPED_NAMES))].text
    for _ in range(draw(st.integers(1, 4))):
        lines = text.split("\n")
        op = draw(st.sampled_from(["delete", "insert", "insert", "replace", "line-delete", "line-dup", "line-swap",
                                   "indent", "dedent"]))
        at = draw(st.integers(0, max(len(text) - 1, 0)))
        row = draw(st.integers(0, max(len(lines) - 1, 0)))
        if op == "delete":
            text = text[:at] + text[at + 1:]
        elif op == "insert":
            text = text[:at] + draw(st.sampled_from(INSERTS) | st.text(max_size=3)) + text[at:]
        elif op == "replace":
            text = text[:at] + draw(st.sampled_from(INSERTS)) + text[at + 1:]
        elif op == "line-delete":
            del lines[row]
            text = "\n".join(lines)
        elif op == "line-dup":
            lines.insert(row, lines[row])
            text = "\n".join(lines)
        elif op == "line-swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[row], lines[other] = lines[other], lines[row]
            text = "\n".join(lines)
        elif op == "indent":
            lines[row] = draw(st.sampled_from([" ", "  ", "\t", "    "])) + lines[row]
            text = "\n".join(lines)
        elif op == "dedent":
            lines[row] = lines[row][draw(st.integers(1, 4)):]
            text = "\n".join(lines)
    return text


@_settings(500)
@given(mutated_text())
def test_text_mutations_of_shipped_specs(text):
    if "\n" not in text:
        text += "\n"          # a one-line string could be taken for a file name
    assert_validate_behaves(text)


# --- every rule with odd arguments: a deterministic sweep ------------------------------------------
# Shape rules run only on schema-checked data, so the sweep calls them directly (fast: ~75,000
# calls in well under a second) and sends any non-ShapeError through validate(), where the schema
# may refuse the value first.  It found `{type: sum, dim: 1.0}` (1.0 is an "integer" to JSON Schema).

ODD = [1.0, 2.0, -1.0, 0.0, [1.0], [2.0, 2.0], 0, -1, 1, 2, 3, True, None, "x", "[0]", [], [1], [2, 2], [0, 0],
       [1, 2, 3], 2**63, 10**400, 1e308, -1e308, math.inf, -math.inf, math.nan, 0.5, 1e-320, {}]
ODD_SHAPES = [("N", 8), ("N", 4, 8), ("N", 4, 8, 8), ("N", 2, 4, 8, 8), ("N",), ("N", None, 8), ("N", 1, 1, 1)]


def test_every_rule_with_odd_arguments():
    from specbuild.shapes.core import ShapeError, infer
    suspects = []
    for name, entry in sorted(registry.BUILTIN_TYPES.items()):
        required = {arg: 4 for arg, spec in entry.args.items() if spec["required"]}
        for shape in ODD_SHAPES:
            inputs = [shape] * max(entry.inputs[0], 1)
            for arg in sorted(entry.args) or [None]:
                for value in ODD:
                    if arg in LOOPED_OVER and isinstance(value, int) and value > 1000:
                        continue
                    args = {**required, **({arg: value} if arg else {})}
                    try:
                        infer(name, args, inputs)
                    except ShapeError:
                        pass
                    except Exception:       # noqa: BLE001 - a candidate; validate() decides
                        suspects.append((name, args, shape))
    crashes = []
    for name, args, shape in suspects:
        dims = [3 if d is None else d for d in shape[1:]]
        spec = {"specbuild": 1, "name": "m", "inputs": {"x": dims}, "layers": [{"type": name, **args}]}
        try:
            specbuild.validate(spec)
        except SpecError:
            pass
        except Exception as error:  # noqa: BLE001
            crashes.append(f"{name} {args} on {dims}: {type(error).__name__}: {error}")
    assert not crashes, "\n".join(crashes[:20])


# --- regressions found by the properties and sweeps above ----------------------------------------

REGRESSIONS = [
    # (layer, input shape, fragment of the message)
    ("{type: Upsample, scale_factor: .inf}", "[2, 8, 8]", "scale_factor must be a positive number"),
    ("{type: Upsample, scale_factor: .nan}", "[2, 8, 8]", "not nan — NaN is no value torch can use here"),
    ("{type: Upsample, scale_factor: 1e308}", "[2, 8, 8]", "too large"),
    ("{type: Upsample, scale_factor: 1" + "0" * 400 + "}", "[2, 8, 8]", "out of the range of torch's 64-bit integers"),
    ("{type: slice, at: '[" + "9" * 5000 + "]'}", "[5, 4]", "too large"),
    ("{type: sum, dim: 1.0}", "[4, 4]", "must be an int, not 1.0"),
    ("{type: mean, dim: 0.0}", "[4, 4]", "must be an int, not 0.0"),
    ("{type: Linear, out_features: .inf}", "[4]", "must be an integer"),
    ("{type: Dropout, p: .nan}", "[4]", "`p` for Dropout must be a number, not nan"),
]


@pytest.mark.parametrize("layer, shape, fragment", REGRESSIONS, ids=[r[0][:40] for r in REGRESSIONS])
def test_regressions(layer, shape, fragment, cli, write_spec):
    path = write_spec(f"specbuild: 1\nname: m\ninputs:\n  x: {shape}\nlayers:\n  - {layer}\n")
    result = cli("validate", path)
    assert result.rc == 1 and f"{path}:6:" in result.err and fragment in result.err, result.err


@pytest.mark.parametrize("spec", [
    {"specbuild": 1, "name": "m", "inputs": {"x": [4]}, "layers": [{"type": "relu", 3: 4}]},
    {"specbuild": 1, "name": "m", "inputs": {None: [4]}, "layers": [{"type": "relu"}]},
    {"specbuild": 1, "name": "m", "inputs": {"x": [4]}, "layers": [{"type": "Linear", "out_features": 10 ** 400}]},
    {"specbuild": 1, "name": "m", 1: 2, (1, 2): 3, "layers": None},
])
def test_odd_python_data(spec):
    assert_validate_behaves(spec)
