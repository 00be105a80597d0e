"""`specbuild validate`: the shipped specs pass, `--set` overrides, usage errors,
and the command never imports torch or its native stack (checked in a fresh
interpreter), so it runs in a fraction of torch's import time."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from conftest import REPO, SHIPPED_SPECS

# Subprocess timeouts are hang guards only: the slowest child here (`import torch`) takes 1.6 s
# on the 2-core CI machine idle and 4.6 s beside two CPU-bound processes.
HANG_GUARD_S = 120

VAR_SPEC = "specbuild: 1\nname: m\ninputs:\n  x: [784]\nlayers:\n  - {type: Linear, out_features: \"${hidden}\"}\n"


def test_there_are_shipped_specs():
    assert REPO.joinpath("specs", "cnn.yaml") in SHIPPED_SPECS


@pytest.mark.parametrize("spec", SHIPPED_SPECS, ids=[p.name for p in SHIPPED_SPECS])
def test_shipped_spec_is_valid(spec, cli):
    result = cli("validate", spec)
    assert result.rc == 0, result.text
    assert result.out.startswith(f"{spec}: ok")


def test_all_shipped_specs_at_once(cli):
    result = cli("validate", *SHIPPED_SPECS)
    assert result.rc == 0, result.text
    assert [line.split(": ok")[0] for line in result.out.splitlines()] == [str(p) for p in SHIPPED_SPECS]


def test_quiet_prints_nothing_for_valid_specs(cli):
    result = cli("validate", "-q", *SHIPPED_SPECS)
    assert result.rc == 0 and result.out == ""


def test_warnings_are_printed_but_exit_0(cli, write_spec):
    # a layer no output uses is a warning, not an error
    path = write_spec(VAR_SPEC.replace('"${hidden}"', "10") + "  - {name: spare, type: relu, in: x}\noutputs: linear_0\n")
    result = cli("validate", path)
    assert result.rc == 0, result.text
    assert f"{path}: ok (1 warning)" in result.out
    assert f"{path}:7:" in result.err and "warning: " in result.err and "not used by any output" in result.err


# --- --set ---------------------------------------------------------------------------------

def _summary_rows(out: str) -> dict[str, list[str]]:
    """`specbuild summary`'s table: node -> [type, inputs, output shape, params]."""
    rows = [re.split(r"\s{2,}", line.strip()) for line in out.splitlines()[3:] if not line.startswith("total")]
    return {cells[0]: cells[1:] for cells in rows if cells}


def test_set_defines_an_undefined_variable(cli, write_spec):
    path = write_spec(VAR_SPEC)
    before = cli("validate", path)
    assert before.rc == 1 and before.out == ""
    assert before.err == (f"{path}:6:20: layers[0].out_features (linear_0): undefined variable ${{hidden}}"
                          " — add `params: {hidden: ...}` or pass --set hidden=...\n")
    after = cli("validate", path, "--set", "hidden=32")
    assert after.rc == 0, after.text
    assert after.out == f"{path}: ok\n" and after.err == ""
    # what the value did: a Linear(784, 32)
    summary = cli("summary", path, "--set", "hidden=32")
    assert summary.rc == 0, summary.text
    assert _summary_rows(summary.out) == {"linear_0": ["Linear", "x", "[N, 32]", f"{784 * 32 + 32:,}"]}


def test_set_overrides_a_param(cli, write_spec):
    path = write_spec(VAR_SPEC.replace("inputs:", "params: {hidden: 64}\ninputs:"))
    assert cli("validate", path).rc == 0
    assert _summary_rows(cli("summary", path).out)["linear_0"] == ["Linear", "x", "[N, 64]", "50,240"]
    wrong = cli("validate", path, "--set", "hidden=abc")
    assert wrong.rc == 1 and wrong.out == ""
    # the line of the use (7), not of the --set or of `params:`
    assert wrong.err == (f"{path}:7:20: layers[0].out_features (linear_0): "
                         "`out_features` for Linear must be an integer, not 'abc'\n")
    assert cli("validate", path, "--set", "hidden=128").rc == 0
    bigger = cli("summary", path, "--set", "hidden=128")
    assert _summary_rows(bigger.out)["linear_0"] == ["Linear", "x", "[N, 128]", "100,480"]
    assert bigger.out.splitlines()[-1] == "total parameters: 100,480 (392.5 KiB as float32)"


def test_set_dotted_key_overrides_any_value(cli):
    from specbuild.spec.validate import check
    from specbuild.spec.variables import parse_overrides
    cnn = REPO / "specs" / "cnn.yaml"
    epochs_line = next(i for i, line in enumerate(cnn.read_text().splitlines(), 1) if "epochs:" in line)
    assert cli("validate", cnn, "--set", "train.epochs=3").rc == 0
    # what the CLI's --set does to the spec: train.epochs 5 -> 3, nothing else
    plain, changed = check(cnn), check(cnn, overrides=parse_overrides(["train.epochs=3"]))
    assert plain.data["train"]["epochs"] == 5 and changed.data["train"]["epochs"] == 3
    assert {**changed.data, "train": {**changed.data["train"], "epochs": 5}} == plain.data
    bad = cli("validate", cnn, "--set", "train.epochs=-3")
    assert bad.rc == 1
    assert bad.err == f"{cnn}:{epochs_line}:3: train.epochs: `epochs` must be an integer >= 0, not -3\n"
    typo = cli("validate", cnn, "--set", "train.epoch=3")
    assert typo.rc == 1
    assert typo.err == f"{cnn}:21:1: train.epoch: unknown key 'epoch' — did you mean 'epochs'?\n"


def test_several_set_options(cli, write_spec):
    path = write_spec(VAR_SPEC.replace('"${hidden}"', '"${hidden}"}\n  - {type: Linear, out_features: "${classes}"'))
    result = cli("validate", path, "--set", "hidden=16", "--set", "classes=10")
    assert result.rc == 0, result.text
    summary = cli("summary", path, "--set", "hidden=16", "--set", "classes=10")
    assert _summary_rows(summary.out) == {"linear_0": ["Linear", "x", "[N, 16]", f"{784 * 16 + 16:,}"],
                                          "linear_1": ["Linear", "linear_0", "[N, 10]", f"{16 * 10 + 10:,}"]}


@pytest.mark.parametrize("assignment, message", [
    ("foo", "--set takes key=value, got 'foo'"),
    ("1x=3", "--set key '1x' must be a name or a dotted path such as train.epochs"),
    ("=3", "--set key '' must be a name or a dotted path such as train.epochs"),
    ("a..b=3", "--set key 'a..b' must be a name or a dotted path such as train.epochs"),
])
def test_malformed_set(assignment, message, cli):
    result = cli("validate", REPO / "specs" / "cnn.yaml", "--set", assignment)
    assert result.rc == 1
    assert result.err == f"{message} — write --set name=value, e.g. --set hidden=64\n"
    assert result.out == ""


def test_usage_errors_exit_2(cli):
    missing = cli("validate")
    assert missing.rc == 2 and missing.err.endswith(
        "specbuild validate: error: the following arguments are required: FILE\n")
    unknown = cli("frobnicate")
    assert unknown.rc == 2 and "specbuild: error: argument COMMAND: invalid choice: 'frobnicate'" in unknown.err
    option = cli("validate", "--nope", REPO / "specs" / "cnn.yaml")
    assert option.rc == 2 and option.err.endswith("specbuild: error: unrecognized arguments: --nope\n")


def test_cli_module_entry_point_in_a_subprocess(write_spec):
    # the one end-to-end run through `python -m`: exit codes and streams as a shell sees them
    bad = write_spec(VAR_SPEC.replace('"${hidden}"', "10").replace("Linear", "Linearr"))
    run = subprocess.run([sys.executable, "-m", "specbuild.cli.main", "validate", bad], capture_output=True,
                         text=True, cwd=REPO, timeout=HANG_GUARD_S)
    assert run.returncode == 1
    assert run.stdout == "" and f"{bad}:6:" in run.stderr and "did you mean 'Linear'" in run.stderr
    assert "Traceback" not in run.stderr


# --- no torch --------------------------------------------------------------------------------

NO_TORCH = """
import sys, specbuild.cli.main
rc = specbuild.cli.main.main(["validate", *sys.argv[1:]])
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
print("rc", rc, "torch modules:", loaded)
assert not loaded, loaded
"""


def test_validate_does_not_import_torch(write_spec):
    broken_shapes = write_spec("specbuild: 1\nname: m\ninputs:\n  x: [1, 28, 28]\nlayers:\n"
                               "  - {type: Conv2d, out_channels: 4, kernel_size: 3}\n  - {type: flatten}\n"
                               "  - {type: Linear, in_features: 784, out_features: 10}\n")
    run = subprocess.run([sys.executable, "-c", NO_TORCH, *map(str, SHIPPED_SPECS), broken_shapes],
                         capture_output=True, text=True, cwd=REPO, timeout=HANG_GUARD_S)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "rc 1 torch modules: []" in run.stdout       # rc 1: the broken spec was checked too
    assert "in_features is 784" in run.stderr


def test_validate_does_not_import_torch_per_importtime():
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "specbuild.cli.main", "validate",
                          *map(str, SHIPPED_SPECS)], capture_output=True, text=True, cwd=REPO, timeout=HANG_GUARD_S)
    assert run.returncode == 0, run.stderr[-3000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}
    assert "specbuild.spec.validate" in imported
    assert not {m for m in imported if m == "torch" or m.startswith("torch.")}


_TOP_LEVEL_PACKAGES = """
import json, sys
before = set(sys.modules)
{code}
print(json.dumps(sorted({{m.split(".")[0] for m in set(sys.modules) - before}} - set(sys.stdlib_module_names))))
"""


def _packages_loaded(code: str, *argv) -> set[str]:
    run = subprocess.run([sys.executable, "-c", _TOP_LEVEL_PACKAGES.format(code=code), *argv], capture_output=True,
                         text=True, cwd=REPO, timeout=HANG_GUARD_S)
    assert run.returncode == 0, run.stderr[-3000:]
    return set(json.loads(run.stdout.splitlines()[-1]))


def test_validate_loads_nothing_of_torchs_stack():
    """Was a timing (validate's median wall time under a quarter of `import torch`'s), which flakes
    on a loaded machine; the work is what makes it fast: it loads none of the packages torch brings
    (torch, numpy, the CUDA bindings, ...) beyond the standard library, typing_extensions and
    C-extension internals."""
    pytest.importorskip("torch")
    torch_stack = _packages_loaded("import torch")
    validate = _packages_loaded("import specbuild.cli.main\nspecbuild.cli.main.main(['validate', '-q', *sys.argv[1:]])",
                                *map(str, SHIPPED_SPECS))
    assert {"torch", "numpy"} <= torch_stack and {"specbuild", "yaml"} <= validate
    shared = {name for name in torch_stack & validate if not name.startswith("_")}
    assert shared <= {"typing_extensions", "cython_runtime"}, shared
