"""The public API holds up when used twice, and refuses a dict that is no tree of plain data.

`build_model`, `build_models`, `summary`, `train`, `export_model` and `spec_from_module` are
imported on first use by the caching `__getattr__` of specbuild/__init__.py; a second call must
find the function again, not a submodule bound under the same name.  A fresh interpreter sees
the lazy path as a user does.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import specbuild

from conftest import REPO

SCRIPT = r"""
import json, sys, tempfile
import specbuild
spec = sys.argv[1]
results = {}
for attempt in (1, 2):
    results.setdefault("load_spec", []).append(type(specbuild.load_spec(spec)).__name__)
    results.setdefault("validate", []).append(specbuild.validate(spec))
    results.setdefault("summary", []).append([type(s).__name__ for s in specbuild.summary(spec)])
    results.setdefault("build_model", []).append(type(specbuild.build_model(spec)).__mro__[1].__name__)
    results.setdefault("build_models", []).append(sorted(specbuild.build_models(spec)))
    model = specbuild.build_model(spec)
    results.setdefault("spec_from_module", []).append(
        len(specbuild.spec_from_module(model, {"x": model.conv1.weight.new_zeros(2, 1, 28, 28)})["layers"]))
    import specbuild.compiler.summary, specbuild.compiler.compile, specbuild.training.trainer   # the submodules too
    import specbuild.export.formats   # binds specbuild.export, the package, never export_model
    with tempfile.TemporaryDirectory() as out:
        results.setdefault("export_model", []).append(specbuild.export_model(spec, "pt2", out + "/m.pt2").name)
    with tempfile.TemporaryDirectory() as out:
        run = specbuild.train(spec, data="mnist-sample", epochs=1, limit=32, out=out, download=False, seed=attempt,
                              progress=None)
    results.setdefault("train", []).append(len(run.history))
    specbuild.register_layer("Twice", lambda: None, args={}, replace=True)
    specbuild.unregister_layer("Twice")
    results.setdefault("register_layer", []).append("Twice" in specbuild.registry.layer_types())
print(json.dumps({"results": results, "kinds": {name: type(getattr(specbuild, name)).__name__
                                                for name in specbuild.__all__}}))
"""


def test_every_public_function_can_be_called_twice():
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(REPO / "specs" / "cnn.yaml")], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["results"] == {"load_spec": ["Spec", "Spec"], "validate": [[], []],
                                 "summary": [["NetworkSummary"], ["NetworkSummary"]],
                                 "build_model": ["GraphModule", "GraphModule"], "build_models": [["cnn"], ["cnn"]],
                                 "train": [1, 1], "register_layer": [False, False], "spec_from_module": [8, 8],
                                 "export_model": ["m.pt2", "m.pt2"]}
    assert report["kinds"] == {"Problem": "type", "Spec": "type", "SpecError": "type", "build_model": "function",
                               "build_models": "function", "export_model": "function", "load_spec": "function",
                               "register_layer": "function",
                               "spec_from_module": "function", "summary": "function", "train": "function",
                               "unregister_layer": "function", "validate": "function"}


def test_lazy_names_stay_functions_in_this_process():
    import specbuild.compiler.summary  # noqa: F401  (binds specbuild.compiler.summary, never specbuild.summary)
    for name in ("build_model", "build_models", "summary", "train", "spec_from_module", "export_model"):
        first, second = getattr(specbuild, name), getattr(specbuild, name)
        assert callable(first) and first is second and first.__name__ == name


# --- a dict that is no tree ------------------------------------------------------------------------

def _spec(**extra) -> dict:
    return {"specbuild": 1, "name": "m", "inputs": {"x": [3]}, "layers": [{"type": "relu", **extra}]}


def test_a_dict_containing_itself_is_refused_naming_the_place():
    spec = _spec()
    spec["layers"][0]["self"] = spec
    with pytest.raises(specbuild.SpecError) as caught:
        specbuild.validate(spec)
    assert str(caught.value) == ("layers[0].self: the spec contains itself: this value is the whole spec again "
                                 "— a spec is plain data, a tree: copy the value instead of referring back to it")


def test_a_list_containing_itself_is_refused_naming_both_places():
    spec = _spec()
    spec["layers"].append(spec["layers"])
    with pytest.raises(specbuild.SpecError) as caught:
        specbuild.build_model(spec)
    assert str(caught.value).splitlines()[0] == (
        "layers[1]: the spec contains itself: this value is `layers` again — a spec is plain data, a tree: "
        "copy the value instead of referring back to it")


def test_a_dict_nested_too_deeply_is_refused_without_recursing():
    deep = []
    for _ in range(100_000):       # deeper than Python's recursion limit: nothing may recurse on it
        deep = [deep]
    with pytest.raises(specbuild.SpecError) as caught:
        specbuild.validate(_spec(extra=deep))
    assert caught.value.message == "nested too deeply (more than 64 levels)"
    assert caught.value.path == "layers[0].extra" + "[0]" * 61


def test_shared_values_are_no_cycle_but_count_each_time():
    layer = {"type": "relu"}
    spec = {"specbuild": 1, "name": "m", "inputs": {"x": [3]}, "layers": [layer, layer]}   # shared: a DAG
    assert specbuild.validate(spec) == []
    wide = [0]
    for _ in range(40):            # 2**40 leaves as a tree, 40 lists in memory
        wide = [wide, wide]
    with pytest.raises(specbuild.SpecError, match=r"the spec is too large \(more than 200000 values\)"):
        specbuild.validate(_spec(extra=wide))
