"""Hostile specs: each is refused with a SpecError, quickly and in bounded memory,
through both `specbuild.validate(...)` and `specbuild validate FILE`, and nothing
in it ever runs.

Timings use perf_counter without tracing; memory is measured in a second run
under tracemalloc (which slows code down, so its times are not asserted).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import tracemalloc

import pytest

import specbuild
from specbuild import SpecError

from conftest import REPO

FAST_S = 2.0
MEMORY_MB = 50


def refused(source) -> SpecError:
    with pytest.raises(SpecError) as info:
        specbuild.validate(source)
    return info.value


def timed_refusal(source) -> tuple[SpecError, float]:
    start = time.perf_counter()
    error = refused(source)
    return error, time.perf_counter() - start


def peak_mb(source) -> float:
    """Peak memory traced while refusing `source`, in MB."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        refused(source)
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def assert_cli_refuses(cli, path, fragment):
    start = time.perf_counter()
    result = cli("validate", path)
    assert time.perf_counter() - start < FAST_S
    assert result.rc == 1 and result.out == ""
    assert fragment in result.err, result.err
    assert result.err.startswith(str(path) + ":")


# --- code-running YAML tags -----------------------------------------------------------------

def _tagged_specs(marker):
    return {
        "os.system": f'specbuild: 1\nname: m\ndoc: !!python/object/apply:os.system ["touch {marker}"]\n',
        "builtins.eval": "specbuild: 1\nname: !!python/name:builtins.eval ''\n",
        "subprocess.Popen": f'specbuild: 1\nname: m\ndoc: !!python/object/new:subprocess.Popen [["touch", "{marker}"]]\n',
        "builtins.exec": f"specbuild: 1\nname: m\ndoc: !!python/object/apply:builtins.exec [\"open('{marker}', 'w')\"]\n",
        "module": "specbuild: 1\nname: !!python/module:os ''\n",
        "nested-in-layer": (f"specbuild: 1\nname: m\ninputs:\n  x: [4]\nlayers:\n"
                            f"  - {{type: Linear, out_features: !!python/object/apply:os.system [\"touch {marker}\"]}}\n"),
    }


TAG_IDS = list(_tagged_specs("m"))


@pytest.mark.parametrize("which", TAG_IDS)
def test_python_tags_refused_and_never_run(which, tmp_path, cli, write_spec):
    marker = tmp_path / "pwned"
    text = _tagged_specs(marker)[which]
    line = text.count("\n", 0, text.index("!!python")) + 1

    error, seconds = timed_refusal(text)
    assert "is not allowed" in error.message and "!!python/" in error.message
    assert error.line == line and seconds < FAST_S

    path = write_spec(text)
    assert_cli_refuses(cli, path, "is not allowed")
    assert f"{path}:{line}:" in cli("validate", path).err
    assert not marker.exists(), "the tag's code ran"


def test_os_system_tag_did_not_run_echo(tmp_path, capfd):
    # The classic payload: had it run, "pwned" would reach the real stdout.
    text = 'specbuild: 1\nname: m\ndoc: !!python/object/apply:os.system ["echo pwned"]\n'
    refused(text)
    assert "pwned" not in capfd.readouterr().out


# --- a closed registry: import paths and builtins are just unknown names --------------------

DANGEROUS_TYPES = ["os.system", "builtins.eval", "subprocess.Popen", "torch.load", "__import__",
                   "eval", "exec", "getattr", "open", "compile", "torch.hub.load", "pickle.loads",
                   "importlib.import_module", "__builtins__", "object", "type", "globals"]


@pytest.mark.parametrize("type_name", DANGEROUS_TYPES)
def test_dangerous_layer_type_is_unknown(type_name, cli, write_spec):
    text = (f"specbuild: 1\nname: m\ninputs:\n  x: [4]\nlayers:\n  - {{type: '{type_name}', arg: 'echo pwned'}}\n"
            f"  - type: weight_norm\n    module: {{type: '{type_name}'}}\n")
    error = refused(text)
    messages = [p.message for p in error.problems]
    assert f"unknown layer type {type_name!r}" in messages
    assert error.problems[0].line == 6
    path = write_spec(text)
    assert_cli_refuses(cli, path, f"unknown layer type {type_name!r}")


@pytest.mark.parametrize("field, text", [
    ("loss", "train:\n  loss: {type: torch.load}\n"),
    ("optimizer", "train:\n  optimizer: {type: os.system, lr: 1}\n"),
    ("scheduler", "train:\n  scheduler: {type: builtins.eval}\n"),
])
def test_dangerous_train_types_are_unknown(field, text):
    spec = "specbuild: 1\nname: m\ninputs:\n  x: [4]\nlayers:\n  - {type: relu}\n" + text
    error = refused(spec)
    assert any(f"unknown {field} type" in p.message for p in error.problems), str(error)


def test_registry_never_resolves_dotted_names():
    from specbuild import registry
    for name in DANGEROUS_TYPES:
        assert registry.lookup(name) is None
    assert all(registry.IDENTIFIER.match(name) for name in registry.layer_types())


# --- size: alias bombs, deep nesting, huge files ---------------------------------------------

LOL_BOMB = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]" for p, c in zip("abcdefgh", "bcdefghi")]) + "\n"


def test_alias_bomb_refused_fast_and_small(cli, write_spec):
    error, seconds = timed_refusal(LOL_BOMB)
    assert "alias expansion too large" in error.message and error.line is not None
    assert seconds < FAST_S
    assert peak_mb(LOL_BOMB) < MEMORY_MB
    assert_cli_refuses(cli, write_spec(LOL_BOMB), "alias expansion too large")


def test_alias_bomb_as_mapping_keys_and_merges():
    bomb = ("a: &a {x1: 1, x2: 2, x3: 3, x4: 4, x5: 5, x6: 6, x7: 7, x8: 8, x9: 9}\n"
            + "".join(f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
                      for p, c in zip("abcdefg", "bcdefgh"))
            + "specbuild: 1\nname: m\nlayers:\n  - <<: *a\n    more: *h\n")
    error, seconds = timed_refusal(bomb)
    assert seconds < FAST_S and "too large" in error.message
    assert peak_mb(bomb) < MEMORY_MB


DEPTH = 10_000
DEEP = {
    "yaml-flow-lists": "specbuild: 1\nname: m\ndoc: " + "[" * DEPTH + "]" * DEPTH + "\n",
    "yaml-flow-maps": "specbuild: 1\nname: m\ndoc: " + "{a: " * DEPTH + "1" + "}" * DEPTH + "\n",
    "yaml-block-lists": "specbuild: 1\nname: m\ndoc:\n" + "- " * DEPTH + "x\n",
    "yaml-block-maps": "specbuild: 1\nname: m\ndoc:\n" + "".join("  " * i + f"k{i}:\n" for i in range(2000)),
    "json-lists": '{"specbuild": 1, "name": "m", "doc": ' + "[" * DEPTH + "]" * DEPTH + "}",
    "json-maps": '{"specbuild": 1, "name": "m", "doc": ' + '{"a": ' * DEPTH + "1" + "}" * DEPTH + "}",
    "json-unclosed": '{"specbuild": 1, "doc": ' + "[" * DEPTH,
}


@pytest.mark.parametrize("which", list(DEEP))
def test_deep_nesting_refused_fast_and_small(which, cli, write_spec):
    text = DEEP[which]
    error, seconds = timed_refusal(text)
    assert "nested too deeply" in error.message, str(error)
    assert error.line is not None and seconds < FAST_S
    assert peak_mb(text) < MEMORY_MB
    suffix = ".json" if which.startswith("json") else ".yaml"
    assert_cli_refuses(cli, write_spec(text, suffix=suffix), "nested too deeply")


def test_deep_nesting_inside_a_layer_argument():
    text = ("specbuild: 1\nname: m\ninputs:\n  x: [4]\nlayers:\n  - {type: Linear, out_features: "
            + "[" * DEPTH + "]" * DEPTH + "}\n")
    error, seconds = timed_refusal(text)
    assert "nested too deeply" in error.message and seconds < FAST_S


def _maxrss_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # KiB on Linux


def test_100_mb_file_refused_fast_and_unread(tmp_path, cli):
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as f:
        f.truncate(100_000_000)
    rss_before = _maxrss_mb()
    error, seconds = timed_refusal(str(path))
    assert "too large" in error.message and error.file == str(path)
    assert seconds < FAST_S
    assert peak_mb(str(path)) < MEMORY_MB
    assert peak_mb(path) < MEMORY_MB                    # as a PathLike too
    assert_cli_refuses(cli, path, "too large")
    assert _maxrss_mb() - rss_before < MEMORY_MB, "the process grew as if it read the file"


def test_100_mb_file_of_real_yaml_refused(tmp_path):
    path = tmp_path / "huge.yaml"
    line = b"- {type: relu}\n"
    with open(path, "wb") as f:
        f.write(b"specbuild: 1\nname: m\nlayers:\n")
        f.write(line * (2_000_000 // len(line)))        # a real start, then a sparse tail
        f.truncate(100_000_000)
    error, seconds = timed_refusal(path)
    assert "too large" in error.message and seconds < FAST_S


def test_large_text_refused_by_size():
    text = "specbuild: 1\nname: m\ndoc: '" + "x" * 11_000_000 + "'\n"
    error, seconds = timed_refusal(text)
    assert "larger than" in error.message and seconds < FAST_S


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_endless_device_refused():
    error, seconds = timed_refusal("/dev/zero")
    assert "larger than" in error.message and seconds < FAST_S


def test_binary_garbage_refused(write_spec):
    path = write_spec(bytes(range(256)) * 4)
    error = refused(path)
    assert "not UTF-8" in error.message or "unacceptable character" in error.message


def test_python_object_as_spec_refused():
    class Evil:
        def __deepcopy__(self, memo):
            raise RuntimeError("boom")

    error = refused({"specbuild": 1, "name": "m", "doc": Evil()})
    assert "cannot copy" in error.message
    with pytest.raises(SpecError):
        specbuild.validate(12345)


# --- hostile sizes in the model itself: validation must not loop or allocate without bound ----
# Each case runs in a child with a time and memory limit, so a hang costs the suite 2.5 s.

_CHILD = textwrap.dedent("""
    import resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, (1_500_000_000, 1_500_000_000))
    import specbuild
    start = time.perf_counter()
    try:
        specbuild.validate(sys.stdin.read())
        outcome = "accepted"
    except specbuild.SpecError as error:
        outcome = "refused"
    print(outcome, time.perf_counter() - start)
""")

HEAD = "specbuild: 1\nname: m\n"
HUGE_COUNTS = {
    "repeat": HEAD + "inputs: {x: [4]}\nlayers:\n  - {type: relu, repeat: 1000000000}\n",
    "lstm-num_layers": HEAD + "inputs: {x: [3, 4]}\nlayers:\n"
                              "  - {type: LSTM, input_size: 4, hidden_size: 4, num_layers: 1000000000}\n",
    "transformer-num_layers": HEAD + "inputs: {x: [3, 4]}\nlayers:\n  - type: TransformerEncoder\n"
                                     "    num_layers: 1000000000\n"
                                     "    encoder_layer: {type: TransformerEncoderLayer, d_model: 4, nhead: 1}\n",
    "chunk-chunks": HEAD + "inputs: {x: [1000000000000]}\nlayers:\n  - {type: chunk, chunks: 1000000000000}\n",
    # 1.2 KB: twelve blocks, each using the next four times, is 4**12 layers to infer
    "nested-blocks": HEAD + "blocks:\n" + "".join(
        f"  b{i}:\n    layers:\n" + f"      - {{type: {f'b{i + 1}' if i < 11 else 'relu'}}}\n" * 4 for i in range(12))
        + "inputs: {x: [4]}\nlayers:\n  - {type: b0}\n",
}


@pytest.mark.parametrize("which", HUGE_COUNTS)
def test_huge_counts_do_not_hang_validation(which):
    try:
        child = subprocess.run([sys.executable, "-c", _CHILD], input=HUGE_COUNTS[which], capture_output=True,
                               text=True, timeout=2.5, cwd=REPO)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{which}: validation still running after 2.5 s")
    # accepted (shapes computed without a loop per copy) or refused (a limit): either, but fast
    assert child.stdout.startswith(("refused", "accepted")), child.stdout + child.stderr[-2000:]
    assert float(child.stdout.split()[1]) < FAST_S
