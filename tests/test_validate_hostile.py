"""Hostile specs: each is refused with a SpecError, in bounded work and memory,
through both `specbuild.validate(...)` and `specbuild validate FILE`, and nothing
in it ever runs.

"Bounded work" is counted, not timed (a timing flakes on a loaded CI machine): the
`work` fixture counts the YAML events the loader walks, the characters PyYAML's
reader consumes, the JSON brackets scanned, the values copied for aliases and the
bytes read from a file, and each test bounds the counts it is about — far below
what walking the whole hostile input would take.  Memory is measured under
tracemalloc.  Validations that could loop per layer copy run in a child process
with a memory limit; they count the layers shape inference visits.
"""
from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap
import tracemalloc
from collections import Counter

import pytest
import yaml

import specbuild
from specbuild import SpecError
from specbuild.spec import infer, loader

from conftest import REPO

MEMORY_MB = 50
_LIMITS = inspect.signature(loader.load_spec).parameters
MAX_BYTES = _LIMITS["max_bytes"].default          # 10,000,000
MAX_DEPTH = _LIMITS["max_depth"].default          # 64
MAX_NODES = _LIMITS["max_nodes"].default          # 200,000
# PyYAML's scanner looks up to 1024 characters ahead for a possible simple key (`[a]: b`), so a
# refusal at the depth limit may have scanned ~1,100 characters of a 20 KB "[[[[...": 8 KB is the bound.
SCAN_CHARS = 8192


def refused(source) -> SpecError:
    with pytest.raises(SpecError) as info:
        specbuild.validate(source)
    return info.value


@pytest.fixture
def work(monkeypatch) -> Counter:
    """Counts the loader's work while the test runs; `work.clear()` before the step measured.

    events: YAML events the loader walked; chars: characters PyYAML's reader consumed;
    json_tokens: strings/brackets the JSON depth pre-scan looked at; copies: values copied
    for aliases; bytes_read: bytes read from a spec file."""
    counts = Counter()
    real_events, real_copy, real_forward = loader._events, loader._copy, yaml.reader.Reader.forward
    real_tokens = loader._JSON_TOKENS

    def events(text, file):
        for event in real_events(text, file):
            counts["events"] += 1
            yield event

    def copy(value):                    # _copy recurses through the module global: each value counts
        counts["copies"] += 1
        return real_copy(value)

    def forward(self, length=1):
        counts["chars"] += length
        return real_forward(self, length)

    class Tokens:
        def finditer(self, text):
            for match in real_tokens.finditer(text):
                counts["json_tokens"] += 1
                yield match

    class CountingFile:
        def __init__(self, f):
            self.f = f

        def read(self, n=-1):
            data = self.f.read(n)
            counts["bytes_read"] += len(data)
            return data

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(loader, "_events", events)
    monkeypatch.setattr(loader, "_copy", copy)
    monkeypatch.setattr(loader, "_JSON_TOKENS", Tokens())
    monkeypatch.setattr(loader, "open", lambda *a, **k: CountingFile(open(*a, **k)), raising=False)
    monkeypatch.setattr(yaml.reader.Reader, "forward", forward)
    return counts


def test_the_work_counters_count(work):
    """The counters see a normal spec's whole text, so a small count below really is a bound."""
    cnn = REPO / "specs" / "cnn.yaml"
    specbuild.validate(cnn)
    size = cnn.stat().st_size
    assert work["bytes_read"] == size and work["chars"] == size and work["events"] > 50
    work.clear()
    specbuild.validate('{"specbuild": 1, "name": "m", "inputs": {"x": [4]}, "layers": [{"type": "relu"}]}')
    assert work["json_tokens"] == 8 + 10         # 8 strings; 10 brackets
    work.clear()
    specbuild.validate("specbuild: 1\nname: m\ninputs: {x: &shape [4, 2], y: *shape}\n"
                       "layers: [{type: add, in: [x, y]}]\n")
    assert work["copies"] == 3                    # *shape: the list and its two values


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
    result = cli("validate", path)
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
def test_python_tags_refused_and_never_run(which, tmp_path, cli, write_spec, work):
    marker = tmp_path / "pwned"
    text = _tagged_specs(marker)[which]
    at = text.index("!!python")
    line, column = text.count("\n", 0, at) + 1, at - text.rfind("\n", 0, at)
    tag = text[at:].split()[0]

    error = refused(text)
    assert (error.message, error.line, error.column) == (f"tag {tag} is not allowed", line, column)
    assert error.hint.startswith("remove the tag: a spec is data")

    path = write_spec(text)
    result = cli("validate", path)
    assert result.rc == 1 and result.out == ""
    assert result.err.startswith(f"{path}:{line}:{column}: tag {tag} is not allowed"), result.err
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


@pytest.mark.parametrize("field, text, name", [
    ("loss", "train:\n  loss: {type: torch.load}\n", "torch.load"),
    ("optimizer", "train:\n  optimizer: {type: os.system, lr: 1}\n", "os.system"),
    ("scheduler", "train:\n  scheduler: {type: builtins.eval}\n", "builtins.eval"),
])
def test_dangerous_train_types_are_unknown(field, text, name):
    spec = "specbuild: 1\nname: m\ninputs:\n  x: [4]\nlayers:\n  - {type: relu}\n" + text
    error = refused(spec)
    assert [(p.message, p.line) for p in error.problems] == [(f"unknown {field} type {name!r}", 8)], str(error)


def test_registry_never_resolves_dotted_names():
    from specbuild import registry
    for name in DANGEROUS_TYPES:
        assert registry.lookup(name) is None
    assert all(registry.IDENTIFIER.match(name) for name in registry.layer_types())


# --- size: alias bombs, deep nesting, huge files ---------------------------------------------

LOL_BOMB = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]" for p, c in zip("abcdefgh", "bcdefghi")]) + "\n"


def test_alias_bomb_refused_small_and_unbuilt(cli, write_spec, work):
    error = refused(LOL_BOMB)
    assert error.message == f"alias expansion too large: *e would make more than {MAX_NODES} values"
    assert (error.line, error.column) == (6, 11)      # f's second *e: with it, over 200,000 values
    assert error.hint == "aliases that multiply ('billion laughs') are refused"
    # *i alone would be 9**9 = 387,420,489 values: at most max_nodes are ever copied
    assert work["copies"] <= MAX_NODES and work["events"] <= LOL_BOMB.count("*") + 20, work
    assert peak_mb(LOL_BOMB) < MEMORY_MB
    assert_cli_refuses(cli, write_spec(LOL_BOMB), "alias expansion too large")


def test_alias_bomb_as_mapping_keys_and_merges(work):
    bomb = ("a: &a {x1: 1, x2: 2, x3: 3, x4: 4, x5: 5, x6: 6, x7: 7, x8: 8, x9: 9}\n"
            + "".join(f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
                      for p, c in zip("abcdefg", "bcdefgh"))
            + "specbuild: 1\nname: m\nlayers:\n  - <<: *a\n    more: *h\n")
    error = refused(bomb)
    assert error.message == f"alias expansion too large: *d would make more than {MAX_NODES} values"
    assert work["copies"] <= MAX_NODES, work
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


def assert_stopped_at_the_depth_limit(work, text):
    """The refusal came at level MAX_DEPTH + 1, not after walking DEPTH levels (20,000+ events)."""
    if text.startswith("{"):            # JSON: refused by the bracket pre-scan (a "key" is a token too)
        assert work["json_tokens"] <= 2 * MAX_DEPTH + 8 and work["events"] == 0, work
    else:                               # a mapping level is 2 events (key, value start)
        assert work["events"] <= 2 * MAX_DEPTH + 20 and work["chars"] <= SCAN_CHARS < len(text), work


@pytest.mark.parametrize("which", list(DEEP))
def test_deep_nesting_refused_small_and_early(which, cli, write_spec, work):
    text = DEEP[which]
    error = refused(text)
    assert error.message == f"nested too deeply (more than {MAX_DEPTH} levels)", str(error)
    assert error.line is not None
    assert_stopped_at_the_depth_limit(work, text)
    assert peak_mb(text) < MEMORY_MB
    suffix = ".json" if which.startswith("json") else ".yaml"
    work.clear()
    assert_cli_refuses(cli, write_spec(text, suffix=suffix), "nested too deeply")
    assert_stopped_at_the_depth_limit(work, text)


def test_deep_nesting_inside_a_layer_argument(work):
    text = ("specbuild: 1\nname: m\ninputs:\n  x: [4]\nlayers:\n  - {type: Linear, out_features: "
            + "[" * DEPTH + "]" * DEPTH + "}\n")
    error = refused(text)
    assert (error.message, error.line) == (f"nested too deeply (more than {MAX_DEPTH} levels)", 6)
    assert_stopped_at_the_depth_limit(work, text)


def _maxrss_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # KiB on Linux


def test_100_mb_file_refused_unread(tmp_path, cli, work):
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as f:
        f.truncate(100_000_000)
    rss_before = _maxrss_mb()
    error = refused(str(path))
    assert error.message == f"the file is too large (100000000 bytes; the limit is {MAX_BYTES})"
    assert error.file == str(path)
    assert work["bytes_read"] == 0 and work["chars"] == 0, work      # refused by its size, before reading
    assert peak_mb(str(path)) < MEMORY_MB
    assert peak_mb(path) < MEMORY_MB                    # as a PathLike too
    assert_cli_refuses(cli, path, "too large")
    assert work["bytes_read"] == 0, work
    assert _maxrss_mb() - rss_before < MEMORY_MB, "the process grew as if it read the file"


def test_100_mb_file_of_real_yaml_refused(tmp_path, work):
    path = tmp_path / "huge.yaml"
    line = b"- {type: relu}\n"
    with open(path, "wb") as f:
        f.write(b"specbuild: 1\nname: m\nlayers:\n")
        f.write(line * (2_000_000 // len(line)))        # a real start, then a sparse tail
        f.truncate(100_000_000)
    error = refused(path)
    assert error.message == f"the file is too large (100000000 bytes; the limit is {MAX_BYTES})"
    assert work["bytes_read"] == 0 and work["events"] == 0, work


def test_large_text_refused_by_size(work):
    text = "specbuild: 1\nname: m\ndoc: '" + "x" * 11_000_000 + "'\n"
    error = refused(text)
    assert error.message == f"the spec text is larger than {MAX_BYTES} bytes"
    assert work["chars"] == 0 and work["events"] == 0, work          # refused before parsing


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_endless_device_refused(work):
    error = refused("/dev/zero")
    assert error.message == "is a character device, not a spec file"     # no regular file: never read
    assert work["bytes_read"] == 0 and work["chars"] == 0, work


def test_binary_garbage_refused(write_spec):
    path = write_spec(bytes(range(256)) * 4)
    error = refused(path)
    # byte 0x80 is the first that is not UTF-8: index 128, on line 2 (after the 0x0a at index 10)
    assert (error.message, error.line, error.column) == ("the file is not UTF-8 text (byte 0x80)", 2, 118)
    assert error.hint == "save the file as UTF-8"


def test_python_object_as_spec_refused():
    class Evil:
        def __deepcopy__(self, memo):
            raise RuntimeError("boom")

    error = refused({"specbuild": 1, "name": "m", "doc": Evil()})
    assert error.message == "cannot copy the spec: boom"
    error = refused(12345)
    assert (error.message, error.hint) == ("cannot load a spec from int", "give a file path, a YAML/JSON text or a dict")


# --- hostile sizes in the model itself: validation must not loop or allocate without bound ----
# Each case runs in a child with a memory limit, counting the layers shape inference visits
# (calls of infer._one, one per layer copy and block use).  The child's timeout is only a hang
# guard: nested-blocks, the slowest case (200,000 visits), takes 1.4 s on the 2-core CI machine
# idle and 2.5-4.3 s beside two CPU-bound processes; 120 s is over 25 times that.

HANG_GUARD_S = 120

_CHILD = textwrap.dedent("""
    import json, resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (1_500_000_000, 1_500_000_000))
    import specbuild
    from specbuild.spec import infer
    visits = 0
    real_one = infer._one
    def counted(*args, **kwargs):
        global visits
        visits += 1
        return real_one(*args, **kwargs)
    infer._one = counted
    try:
        specbuild.validate(sys.stdin.read())
        problems = None
    except specbuild.SpecError as error:
        problems = [[p.message, p.line] for p in error.problems]
    print(json.dumps({"problems": problems, "visits": visits, "limit": infer.MAX_EXPANDED_NODES}))
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
# each case is refused by a limit, in at most `visits` layer visits
REFUSALS = {
    "repeat": (["`repeat` for relu must be an integer >= 1 and <= 10,000, not 1000000000", 5], 0),
    "lstm-num_layers": (["LSTM.num_layers is 1,000,000,000, over specbuild's limit of 10,000 "
                         "(input: x gives [N, 3, 4])", 5], 1),
    "transformer-num_layers": (["TransformerEncoder.num_layers is 1,000,000,000, over specbuild's limit of 10,000 "
                                "(input: x gives [N, 3, 4])", 6], 1),
    "chunk-chunks": (["chunk.chunks is 1,000,000,000,000, over specbuild's limit of 10,000 "
                      "(input: x gives [N, 1000000000000])", 5], 1),
    "nested-blocks": ([f"the model expands to more than {infer.MAX_EXPANDED_NODES:,} layers (blocks used inside blocks)",
                       77], infer.MAX_EXPANDED_NODES),
}


@pytest.mark.parametrize("which", HUGE_COUNTS)
def test_huge_counts_are_refused_in_bounded_work(which):
    try:
        child = subprocess.run([sys.executable, "-c", _CHILD], input=HUGE_COUNTS[which], capture_output=True,
                               text=True, timeout=HANG_GUARD_S, cwd=REPO)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{which}: validation still running after {HANG_GUARD_S} s: it hangs")
    assert child.returncode == 0, child.stdout + child.stderr[-2000:]
    result = json.loads(child.stdout)
    problem, visits = REFUSALS[which]
    assert result["problems"] == [problem]
    # the limit, not the 4**12 (or 10**9) layers written, bounds the work
    assert result["visits"] <= visits <= result["limit"], result
