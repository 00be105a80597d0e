"""`--set` (and `overrides=` in Python) as spec/variables.py applies it.

A plain name sets a param: one declared under `params:` or used as `${name}`; any other
plain name is an error.  A dotted key sets any value, creating missing mappings (the
schema then judges their keys), and reaches list items by index.  The command line's
messages are in test_cli_faults.py; here is what the overrides do to the spec's data.
"""
from __future__ import annotations

import pytest

from specbuild.errors import SpecError
from specbuild.spec.validate import check
from specbuild.spec.variables import apply_overrides, parse_assignment

SPEC = {"specbuild": 1, "name": "tiny", "params": {"hidden": 8},
        "inputs": {"x": [4]},
        "layers": [{"name": "fc1", "type": "Linear", "out_features": "${hidden}"},
                   {"type": "relu"},
                   {"name": "fc2", "type": "Linear", "out_features": "${classes}"}],
        "train": {"data": "iris", "metrics": ["accuracy"]}}


def test_plain_names_set_declared_and_used_params():
    data = apply_overrides(SPEC, {"hidden": 16, "classes": 3})
    assert data["params"] == {"hidden": 16, "classes": 3}        # `classes` is used, though not declared
    assert SPEC["params"] == {"hidden": 8}                        # the spec itself is left alone


def test_a_plain_name_that_is_no_param_is_refused():
    with pytest.raises(SpecError) as error:
        apply_overrides(SPEC, {"hiden": 16})
    assert str(error.value) == "--set hiden=16: the spec has no param named 'hiden' — did you mean 'hidden'?"


def test_dotted_keys_reach_list_items_and_nested_values():
    data = apply_overrides(SPEC, {"layers.0.out_features": 32, "layers.2.name": "head", "train.metrics.0": "f1",
                                  "inputs.x.0": 6, "train.data.batch_size": 4})
    assert data["layers"][0]["out_features"] == 32 and data["layers"][2]["name"] == "head"
    assert data["train"]["metrics"] == ["f1"] and data["inputs"]["x"] == [6]
    assert data["train"]["data"] == {"dataset": "iris", "batch_size": 4}     # `data: iris` is {dataset: iris}


def test_missing_mappings_are_created_for_the_schema_to_judge():
    data = apply_overrides({k: v for k, v in SPEC.items() if k != "train"}, {"train.optimizer.lr": 0.1})
    assert data["train"] == {"optimizer": {"lr": 0.1}}


def test_an_override_through_the_python_api_reaches_the_model():
    checked = check(SPEC, overrides={"classes": 3, "layers.0.out_features": 5})
    assert checked.shapes["tiny"]["fc1"].output[-1] == 5 and checked.shapes["tiny"]["fc2"].output[-1] == 3


@pytest.mark.parametrize("key, message", [
    ("layers.3.type", "--set layers.3.type=x: index 3 is past the end of layers, which has 3 items — its indices "
                      "run from 0 to 2"),
    ("params.hidden.x", "--set params.hidden.x=x: params.hidden is 8, not a mapping or a list, so it has no 'x' "
                        "inside — set params.hidden itself, e.g. --set params.hidden=..."),
    ("layers.-1.type", "--set layers.-1.type=x: the key must be a name or a dotted path such as train.epochs — "
                       "write --set name=value, e.g. --set hidden=64"),
])
def test_paths_that_lead_nowhere(key, message):
    with pytest.raises(SpecError) as error:
        apply_overrides(SPEC, {key: "x"})
    assert str(error.value) == message


def test_keys_on_the_command_line():
    assert parse_assignment("layers.0.out_features=64") == ("layers.0.out_features", 64)
    for bad in ("0.layers=1", "layers.0x=1", "layers..0=1"):
        with pytest.raises(ValueError, match="must be a name or a dotted path"):
            parse_assignment(bad)
