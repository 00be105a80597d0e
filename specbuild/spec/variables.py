"""`params:` and `${name}`: a spec's variables.

A string that is exactly `${name}` becomes the variable's value, with its type
(`out_features: ${hidden}` gives an int); inside a longer string the value is
spliced in as text.  `--set name=value` on the command line overrides `params`
(and, with a dotted key such as `train.epochs=3`, any value of the spec).
"""
from __future__ import annotations

import copy
import re


from ..errors import Problem, SpecError, did_you_mean
from .loader import load_spec

WHOLE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
ANY = re.compile(r"\$\{([^}]*)\}")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_assignment(text: str) -> tuple[str, object]:
    """`hidden=64` -> ("hidden", 64); the value is read as a spec's value (safe YAML)."""
    if "=" not in text:
        raise ValueError(f"--set takes key=value, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not all(NAME.match(part) for part in key.split(".")):
        raise ValueError(f"--set key {key!r} must be a name or a dotted path such as train.epochs")
    try:   # read the value as a spec file's value is read: YAML 1.2 numbers (1e-3) and booleans
        value = load_spec(f"value: {raw}\n").data["value"] if raw.strip() else ""
    except SpecError:
        value = raw
    if isinstance(value, (dict, list)) and not raw.strip().startswith(("[", "{")):
        value = raw
    return key, value


def parse_overrides(assignments) -> dict:
    """Every `--set key=value` of a command line, as the overrides `check` applies."""
    out = {}
    for text in assignments or []:
        try:
            key, value = parse_assignment(text)
        except ValueError as error:
            raise SpecError(str(error), hint="write --set name=value, e.g. --set hidden=64") from None
        out[key] = value
    return out


def apply_overrides(data: dict, overrides: dict) -> dict:
    """A copy of `data` with overrides applied: plain names go into params, dotted keys anywhere."""
    data = copy.deepcopy(data)
    for key, value in (overrides or {}).items():
        if "." not in key:
            params = data.get("params")
            if not isinstance(params, dict):
                params = data["params"] = {}
            params[key] = value
            continue
        target = data
        *parents, last = key.split(".")
        for depth, part in enumerate(parents):
            if parents[:depth + 1] == ["train", "data"] and isinstance(target.get(part), str):
                target[part] = {"dataset": target[part]}     # `data: mnist` is short for {dataset: mnist}
            elif not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
        target[last] = value
    return data


def substitute(data: dict, spec, problems: list[Problem]) -> dict:
    """A copy of `data` with every `${name}` replaced; undefined names become problems."""
    params = data.get("params") if isinstance(data.get("params"), dict) else {}

    def walk(value, path):
        if isinstance(value, dict):
            return {k: walk(v, path + (k,)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, path + (i,)) for i, v in enumerate(value)]
        if not isinstance(value, str) or "${" not in value or path[:1] == ("params",):
            return value
        whole = WHOLE.match(value)
        if whole:
            return lookup(whole.group(1), path, value)
        return ANY.sub(lambda m: str(lookup(m.group(1), path, value)), value)

    def lookup(name, path, text):
        if name in params:
            return params[name]
        if not NAME.match(name):
            problems.append(spec.problem(f"bad variable {text!r}", path,
                                         hint="a variable is written ${name}, with a name of letters, digits and _"))
        else:
            hint = did_you_mean(name, params) or ("define it under `params:`" if params else
                                                  f"add `params: {{{name}: ...}}` or pass --set {name}=...")
            problems.append(spec.problem(f"undefined variable ${{{name}}}", path, hint=hint))
        return text

    return walk(data, ())
