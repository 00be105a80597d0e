"""Cases of specs `validate` refuses, each with the exact first line of its error.

A case is (id, spec text, first line after "FILE:"); `parametrize(CASES)` runs a test once per
case, and `assert_refused` checks a case both ways: through the CLI (exit status 1, nothing on
stdout, the line after the file's path) and through the API (the line after "<spec>").
"""
from __future__ import annotations

import pytest

import specbuild


def parametrize(cases):
    return pytest.mark.parametrize("text, first", [c[1:] for c in cases], ids=[c[0] for c in cases])


def assert_refused(text: str, first: str, cli, write_spec) -> None:
    path = write_spec(text)
    result = cli("validate", path)
    assert result.rc == 1 and result.out == ""
    assert result.err.splitlines()[0] == f"{path}:{first}"
    with pytest.raises(specbuild.SpecError) as caught:
        specbuild.validate(text)
    assert str(caught.value).splitlines()[0] == f"<spec>:{first}"
