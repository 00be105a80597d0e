"""`specbuild validate`: the shipped specs pass, `--set` overrides, usage errors,
and the command never imports torch (checked in a fresh interpreter) and so
runs in a fraction of torch's import time."""
from __future__ import annotations

import statistics
import subprocess
import sys
import time

import pytest

from conftest import REPO, SHIPPED_SPECS

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

def test_set_defines_an_undefined_variable(cli, write_spec):
    path = write_spec(VAR_SPEC)
    before = cli("validate", path)
    assert before.rc == 1 and "undefined variable ${hidden}" in before.err and f"{path}:6:" in before.err
    after = cli("validate", path, "--set", "hidden=32")
    assert after.rc == 0, after.text
    assert after.out.startswith(f"{path}: ok")


def test_set_overrides_a_param(cli, write_spec):
    path = write_spec(VAR_SPEC.replace("inputs:", "params: {hidden: 64}\ninputs:"))
    assert cli("validate", path).rc == 0
    wrong = cli("validate", path, "--set", "hidden=abc")
    assert wrong.rc == 1 and "must be an integer, not 'abc'" in wrong.err
    assert f"{path}:7:" in wrong.err            # the line of the use, not of the --set
    assert cli("validate", path, "--set", "hidden=128").rc == 0


def test_set_dotted_key_overrides_any_value(cli):
    cnn = REPO / "specs" / "cnn.yaml"
    assert cli("validate", cnn, "--set", "train.epochs=3").rc == 0
    bad = cli("validate", cnn, "--set", "train.epochs=-3")
    assert bad.rc == 1 and "train.epochs" in bad.err and "-3" in bad.err
    typo = cli("validate", cnn, "--set", "train.epoch=3")
    assert typo.rc == 1 and "unknown key 'epoch'" in typo.err and "did you mean 'epochs'" in typo.err


def test_several_set_options(cli, write_spec):
    path = write_spec(VAR_SPEC.replace('"${hidden}"', '"${hidden}"}\n  - {type: Linear, out_features: "${classes}"'))
    result = cli("validate", path, "--set", "hidden=16", "--set", "classes=10")
    assert result.rc == 0, result.text


@pytest.mark.parametrize("assignment, fragment", [
    ("foo", "--set takes key=value, got 'foo'"),
    ("1x=3", "--set key '1x' must be a name or a dotted path"),
    ("=3", "must be a name"),
    ("a..b=3", "must be a name"),
])
def test_malformed_set(assignment, fragment, cli):
    result = cli("validate", REPO / "specs" / "cnn.yaml", "--set", assignment)
    assert result.rc == 1
    assert fragment in result.err and "--set name=value" in result.err
    assert result.out == ""


def test_usage_errors_exit_2(cli):
    assert cli("validate").rc == 2
    assert cli("frobnicate").rc == 2
    assert cli("validate", "--nope", REPO / "specs" / "cnn.yaml").rc == 2


def test_cli_module_entry_point_in_a_subprocess(write_spec):
    # the one end-to-end run through `python -m`: exit codes and streams as a shell sees them
    bad = write_spec(VAR_SPEC.replace('"${hidden}"', "10").replace("Linear", "Linearr"))
    run = subprocess.run([sys.executable, "-m", "specbuild.cli.main", "validate", bad], capture_output=True,
                         text=True, cwd=REPO, timeout=60)
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
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "rc 1 torch modules: []" in run.stdout       # rc 1: the broken spec was checked too
    assert "in_features is 784" in run.stderr


def test_validate_does_not_import_torch_per_importtime():
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "specbuild.cli.main", "validate",
                          *map(str, SHIPPED_SPECS)], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert run.returncode == 0, run.stderr[-3000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}
    assert "specbuild.spec.validate" in imported
    assert not {m for m in imported if m == "torch" or m.startswith("torch.")}


def _median_wall(argv, runs=3) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, cwd=REPO, check=True, capture_output=True, timeout=120)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def test_validate_is_much_faster_than_importing_torch():
    pytest.importorskip("torch")
    validate = _median_wall([sys.executable, "-m", "specbuild.cli.main", "validate", *map(str, SHIPPED_SPECS)])
    torch = _median_wall([sys.executable, "-c", "import torch"])
    assert validate < torch / 4, f"validate {validate:.2f}s vs import torch {torch:.2f}s (medians of 3)"
