"""`${...}` expressions: the whitelist evaluates what it allows and refuses the rest, bounded."""
from __future__ import annotations

import pytest

from specbuild.errors import SpecError
from specbuild.spec.expressions import ExpressionError, evaluate, names_in
from specbuild.spec.validate import check
from cli_runner import line_of

VALUES = {"d": 64, "n_head": 4, "inp": 32, "oup": 32, "stride": 1, "t": 6, "flag": True, "p": 0.5}


@pytest.mark.parametrize("text, value", [
    ("3 * d", 192), ("d // n_head", 16), ("inp * t", 192), ("d % 10", 4), ("2 ** 10", 1024),
    ("stride == 1 and inp == oup", True), ("stride != 1 or inp != oup", False), ("not flag", False),
    ("-d + 1", -63), ("(d + 1) * 2", 130), ("d >= 64", True), ("1 < stride <= 2", False),
    ("(" * 90 + "d" + ")" * 90, 64), ("p * 2", 1.0), ("d / 4", 16.0), ("true", True), ("d", 64), (" d ", 64),
])
def test_allowed_expressions(text, value):
    result = evaluate(text, VALUES)
    assert result == value and type(result) is type(value)


@pytest.mark.parametrize("text, fragment", [
    ('__import__("os")', "a call is not allowed"),
    ("d.real", "attribute access is not allowed"),
    ("d[0]", "indexing is not allowed"),
    ("'a' * 3", "a string is not allowed"),
    ("lambda: 1", "a lambda is not allowed"),
    ("d if flag else 1", "a conditional expression is not allowed"),
    ("[d]", "a list is not allowed"),
    ("d & 1", "& is not allowed"),
    ("d << 2", "<< is not allowed"),
    ("d is d", "is is not allowed"),
    ("9**9**9", "beyond torch's 64-bit integers"),
    ("2 ** 64", "beyond torch's 64-bit integers"),
    ("d * 2 ** 62", "beyond torch's 64-bit integers"),
    ("10.0 ** 400", "out of range"),
    ("d // 0", "division by zero"),
    ("d % 0", "division by zero"),
    ("flag + 1", "takes numbers"),
    ("d and flag", "takes true or false"),
    ("x + 1", "undefined variable 'x'"),
    ("-(" * 30 + "d" + ")" * 30, "nests deeper"),
    ("-" * 40 + "d", "nests deeper"),
    ("d +" * 80 + " d", "characters long"),
    ("d +", "no name or expression"),
    ("", "empty"),
])
def test_refused_expressions(text, fragment):
    with pytest.raises(ExpressionError) as caught:
        evaluate(text, VALUES)
    assert fragment in caught.value.message


def test_names_in_reads_only_names():
    assert names_in("stride == 1 and inp == oup") == {"stride", "inp", "oup"}
    assert names_in("true and not false") == set()
    assert names_in("d +") == set()


HOSTILE = """\
specbuild: 1
name: m
params: {d: 8}
inputs:
  x: [4]
layers:
  - {name: fc, type: Linear, out_features: "${VALUE}"}
"""


@pytest.mark.parametrize("value, fragment", [
    ('__import__(\\"os\\").system(\\"true\\")', "a call is not allowed"),
    ("d.__class__", "attribute access is not allowed"),
    ("9**9**9", "beyond torch's 64-bit integers"),
    ("-(-(-(-(-(-(-(-(-(-(-(-(-(-(-(-(-(-(-(-(-(-(-(-(-(-(d))))))))))))))))))))))))))", "nests deeper"),
    ("open", "undefined variable ${open}"),
])
def test_hostile_expressions_are_refused_at_their_line(tmp_path, value, fragment):
    text = HOSTILE.replace("VALUE", value)
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as caught:
        check(str(path))
    assert fragment in str(caught.value)
    assert caught.value.problems[0].line == line_of(text, "out_features")


def test_expression_values_keep_their_type_and_splice_into_text():
    spec = HOSTILE.replace("VALUE", "d * 2 + 1") + "  - {name: act, type: gelu, approximate: \"${'none'}\"}\n"
    with pytest.raises(SpecError, match="a string is not allowed"):
        check(spec)
    checked = check(HOSTILE.replace("VALUE", "d * 2 + 1"))
    assert checked.data["layers"][0]["out_features"] == 17
    spliced = HOSTILE.replace('"${VALUE}"', "3").replace("layers:", "doc: width ${d * 2}\nlayers:")
    assert check(spliced).data["doc"] == "width 16"


def test_when_must_be_a_boolean():
    text = HOSTILE.replace('"${VALUE}"', "3").rstrip("}\n") + ", when: \"${d + 1}\"}\n"
    with pytest.raises(SpecError) as caught:
        check(text)
    assert "`when:` must be true or false, not 9" in str(caught.value)
    assert caught.value.problems[0].line == 7
