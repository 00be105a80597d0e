"""The loader: plain data plus a source map, and safe against hostile input."""
import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from specbuild.errors import SpecError
from specbuild.spec import loader
from specbuild.spec.loader import Spec, format_path, load_spec

SPEC = """\
name: mlp
training:
  lr: 1e-3
  epochs: 5
layers:
  - type: linear
    out_features: 64
  - {type: relu}
  - type: linear
    out_features: 10
"""


def refused(source, **kw) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_spec(source, **kw)
    return info.value


# --- positions --------------------------------------------------------------

def test_positions_of_keys_and_items():
    spec = load_spec(SPEC)
    assert spec.file is None and spec.text == SPEC
    assert spec.positions[()] == (1, 1)
    assert spec.positions[("name",)] == (1, 1)
    assert spec.positions[("training", "lr")] == (3, 3)
    assert spec.positions[("layers", 0)] == (6, 5)
    assert spec.positions[("layers", 0, "out_features")] == (7, 5)
    assert spec.positions[("layers", 1)] == (8, 5)
    assert spec.positions[("layers", 1, "type")] == (8, 6)
    assert spec.positions[("layers", 2, "out_features")] == (10, 5)


def test_locate_falls_back_to_ancestor_and_problem_is_filled_in(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(SPEC)
    spec = load_spec(path)
    assert spec.locate(("layers", 2, "out_features", "nope")) == (10, 5)
    assert spec.locate(("missing",)) == (1, 1)
    assert Spec({}, None, {}).locate(("a",)) == (None, None)
    p = spec.problem("must be positive", ("layers", 2, "out_features"), node="fc2", hint="use 10")
    assert (p.file, p.line, p.column) == (str(path), 10, 5)
    assert p.path == "layers[2].out_features" and p.node == "fc2" and p.hint == "use 10"
    assert str(p).startswith(f"{path}:10:5: layers[2].out_features (fc2): must be positive")


def test_format_path():
    assert format_path(("layers", 4, "out_features")) == "layers[4].out_features"
    assert format_path(()) == ""
    assert format_path((0, "a", 1, 2)) == "[0].a[1][2]"


# --- inputs ---------------------------------------------------------------------

def test_yaml_file_str_and_path(tmp_path):
    path = tmp_path / "model.yml"
    path.write_text(SPEC)
    for source in (path, str(path)):
        spec = load_spec(source)
        assert spec.file == str(path) and spec.text == SPEC
        assert spec.data["layers"][2] == {"type": "linear", "out_features": 10}


def test_json_file_and_text(tmp_path):
    text = '{\n  "name": "mlp",\n  "lr": 1e-3,\n  "layers": [\n    {"type": "relu"}\n  ]\n}\n'
    path = tmp_path / "model.json"
    path.write_text(text)
    spec = load_spec(path)
    assert spec.data == json.loads(text) and spec.file == str(path)
    assert spec.positions[("lr",)] == (3, 3)
    assert spec.positions[("layers", 0)] == (5, 5)
    assert load_spec(text).data == json.loads(text)


def test_json_positions_are_best_effort():
    spec = load_spec('{"a": "x\x7fy"}')     # valid JSON, but PyYAML refuses DEL
    assert spec.data == {"a": "x\x7fy"} and spec.positions == {(): (1, 1)}


def test_text_starting_with_brace_is_strict_json():
    e = refused("{a: 1}")
    assert "invalid JSON" in e.message and "read as JSON" in e.hint


def test_file_without_yaml_suffix_is_parsed_as_yaml(tmp_path):
    path = tmp_path / "model.spec"
    path.write_text("a: 1\n")
    assert load_spec(path).data == {"a": 1}


def test_dict_is_deep_copied_and_spec_passes_through():
    source = {"layers": [{"type": "relu"}]}
    spec = load_spec(source)
    assert spec.data == source and spec.positions == {} and spec.file is None
    spec.data["layers"][0]["type"] = "gelu"
    assert source["layers"][0]["type"] == "relu"
    assert load_spec(spec) is spec


def test_other_source_types_are_refused():
    assert "cannot load a spec from int" in refused(3).message
    assert "cannot load a spec from bytes" in refused(b"a: 1").message


# --- scalars --------------------------------------------------------------------

def test_exponent_floats_are_floats():
    data = load_spec("a: 1e-3\nb: 1e5\nc: -2.5E+4\nd: '1e-3'\ne: 1.0e-3\n").data
    assert data == {"a": 0.001, "b": 100000.0, "c": -25000.0, "d": "1e-3", "e": 0.001}
    assert isinstance(data["b"], float)


def test_scalars_resolve_like_safeloader():
    data = load_spec("a: 3\nb: true\nc: ~\nd: 0.5\ne: hi\nf: '3'\ng: !!str 4\nh: !!float '2'\n").data
    assert data == {"a": 3, "b": True, "c": None, "d": 0.5, "e": "hi", "f": "3", "g": "4", "h": 2.0}


def test_timestamps_stay_strings():
    assert load_spec("when: 2020-01-01\n").data == {"when": "2020-01-01"}


def test_bad_value_for_explicit_tag():
    e = refused("a: 1\nb: !!int abc\n")
    assert e.line == 2 and "!!int" in e.message


# --- keys -----------------------------------------------------------------------

def test_duplicate_keys_name_the_key_and_both_lines():
    e = refused("name: a\nlayers: []\nname: b\n")
    assert "duplicate key 'name'" in e.message
    assert "line 1" in e.message and "line 3" in e.message and e.line == 3


def test_duplicate_keys_in_json_too():
    e = refused('{"a": 1,\n "a": 2}')
    assert "duplicate key 'a'" in e.message and e.line == 2


def test_mapping_key_must_be_a_scalar():
    e = refused("a: 1\n? [x, y]\n: 2\n")
    assert "key" in e.message and e.line == 2


def test_merge_keys_explicit_keys_win():
    spec = load_spec("base: &b {act: relu, width: 8}\nlayer:\n  <<: *b\n  width: 16\n")
    assert spec.data["layer"] == {"act": "relu", "width": 16}
    assert spec.positions[("layer", "width")] == (4, 3)
    assert spec.positions[("layer", "act")] == (3, 3)   # the `<<` key
    assert "merges mappings only" in refused("a: &a 1\nb:\n  <<: *a\n").message


def test_aliases_are_copies():
    spec = load_spec("a: &x [1, 2]\nb: *x\n")
    assert spec.data == {"a": [1, 2], "b": [1, 2]}
    assert spec.data["a"] is not spec.data["b"]


def test_unknown_and_self_referencing_alias():
    assert "unknown alias *y" in refused("a: *y\n").message
    assert "unknown alias *x" in refused("a: &x [*x]\n").message


# --- syntax errors ----------------------------------------------------------------

def test_yaml_syntax_error_has_line_and_message():
    e = refused("name: mlp\nlayers: a: b\n")
    assert e.line == 2 and e.column == 10 and e.file is None
    assert "mapping values are not allowed here" in e.message


def test_yaml_syntax_error_in_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("a: [1, 2\nb: 3\n")
    e = refused(path)
    assert e.file == str(path) and e.line is not None and "expected ','" in e.message


def test_tabs_get_a_hint():
    e = refused("model:\n\tlayers: 3\n")
    assert e.line == 2 and "YAML forbids tabs for indentation; use spaces" in e.hint


def test_json_syntax_error_has_json_line_and_column():
    e = refused('{\n  "a": 1,\n  "b": }\n')
    assert (e.line, e.column) == (3, 8) and "invalid JSON" in e.message


# --- hostile input ----------------------------------------------------------------

@pytest.mark.parametrize("text, tag", [
    ('run: !!python/object/apply:os.system ["echo hi"]\n', "!!python/object/apply:os.system"),
    ("f: !!python/name:builtins.eval\n", "!!python/name:builtins.eval"),
    ("p: !!python/object/new:subprocess.Popen [[ls]]\n", "!!python/object/new:subprocess.Popen"),
    ("a: 1\nlayer: !Linear {out: 3}\n", "!Linear"),
    ("a: 1\nb: !!binary aGk=\n", "!!binary"),
    ("a: 1\nb: !!set {x: null}\n", "!!set"),
])
def test_non_standard_tags_are_refused(text, tag, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    e = refused(text)
    assert tag in e.message and "not allowed" in e.message
    assert e.line == text.count("\n", 0, text.index("!")) + 1
    assert list(tmp_path.iterdir()) == []     # nothing ran


def test_billion_laughs_is_refused_unbuilt(monkeypatch):
    # bounded work, not a timing: count the values copied for aliases (9**9 if the bomb were built)
    copies = []
    real_copy = loader._copy
    monkeypatch.setattr(loader, "_copy", lambda value: copies.append(1) or real_copy(value))
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    e = refused("\n".join(lines) + "\n", max_nodes=10_000)
    assert e.message == "alias expansion too large: *d would make more than 10000 values"
    assert e.line == 5 and len(copies) <= 10_000


def test_small_aliases_within_max_nodes():
    assert refused("a: &a [1, 2, 3]\nb: [*a, *a]\n", max_nodes=8).message.startswith("alias")
    assert load_spec("a: &a [1, 2, 3]\nb: [*a, *a]\n", max_nodes=20).data["b"] == [[1, 2, 3]] * 2


@pytest.mark.parametrize("text", [
    "a: " + "[" * 10_000 + "]" * 10_000 + "\n",
    '{"a": ' + "[" * 10_000 + "]" * 10_000 + "}",
])
def test_deep_nesting_is_refused_at_the_limit(text, monkeypatch):
    # bounded work, not a timing: the YAML events walked (or JSON brackets scanned) stop at the limit
    seen = []
    real_events, real_tokens = loader._events, loader._JSON_TOKENS

    def events(text, file):
        for event in real_events(text, file):
            seen.append(event)
            yield event

    class Tokens:
        def finditer(self, text):
            for match in real_tokens.finditer(text):
                seen.append(match)
                yield match
    monkeypatch.setattr(loader, "_events", events)
    monkeypatch.setattr(loader, "_JSON_TOKENS", Tokens())
    e = refused(text)
    assert (e.message, e.line) == ("nested too deeply (more than 64 levels)", 1)
    assert 64 < len(seen) <= 64 + 10          # 10,000 levels written


def test_depth_limit_counts_levels():
    assert load_spec("a: [[1]]\n", max_depth=3).data == {"a": [[1]]}
    assert "nested too deeply" in refused("a: [[[1]]]\n", max_depth=3).message
    assert "nested too deeply" in refused("a: &x [[1]]\nb: [*x]\n", max_depth=3).message


def test_huge_file_is_refused_by_size_without_reading(tmp_path, monkeypatch):
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as f:
        f.truncate(100_000_000)       # sparse: nothing is written

    def no_open(*args, **kwargs):
        raise AssertionError("the loader opened the file")
    monkeypatch.setattr(loader, "open", no_open, raising=False)
    e = refused(path)
    assert e.message == "the file is too large (100000000 bytes; the limit is 10000000)" and e.file == str(path)


def test_huge_text_is_refused():
    assert refused("a: " + "x" * 200, max_bytes=100).message == "the spec text is larger than 100 bytes"


# --- files and documents ----------------------------------------------------------

def test_empty_file(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    e = refused(path)
    assert e.message == "the spec is empty" and e.file == str(path)
    assert refused("# just a comment\n").message == "the spec is empty"


def test_multiple_documents():
    e = refused("a: 1\n---\nb: 2\n")
    assert e.line == 2 and "one YAML document" in e.message


def test_top_level_must_be_a_mapping():
    e = refused("- a\n- b\n")
    assert "must be a mapping" in e.message and "list" in e.message and e.line == 1
    assert "must be a mapping" in refused("[1, 2]").message


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("a: 1\nname: caf\xe9\n".encode("latin-1"))
    e = refused(path)
    assert "UTF-8" in e.message and e.file == str(path) and (e.line, e.column) == (2, 10)


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    for source in (missing, str(missing)):
        e = refused(source)
        assert e.message == "no such file" and e.file == str(missing)


def test_directory(tmp_path):
    for source in (tmp_path, str(tmp_path)):
        e = refused(source)
        assert "directory" in e.message and e.file == str(tmp_path)


# --- never anything but SpecError -----------------------------------------------------

_YAML_CHARS = list(":-[]{}&*!|>'\"#%@`\t\n ,?\\<~=") + ["!!", "<<", "---", "*a", "&a", "\x00"]


@st.composite
def mutated_spec(draw):
    text = SPEC
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(text)))
        j = min(len(text), i + draw(st.integers(0, 8)))
        insert = draw(st.one_of(st.sampled_from(_YAML_CHARS), st.text(max_size=4)))
        text = text[:i] + insert + text[j:]
    return text


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(st.text(), mutated_spec()))
def test_random_text_gives_spec_or_specerror(text):
    try:
        spec = load_spec(text)
    except SpecError as e:
        assert e.problems and e.message
    else:
        assert isinstance(spec, Spec) and isinstance(spec.data, dict)
