"""A spec's data as YAML a person would write: what fits on a line stays on it.

Used wherever specbuild writes a spec for people to read or diff: a run folder's spec.yaml,
a study's best.yaml, `specbuild import`.  Top-level sections come in the format's order;
each layer is a flow mapping `{name: fc1, type: Linear, ...}` on one line, except one holding
nested layers (a Sequential), which lists them below it; any other mapping or list stays in
flow style while it fits in WIDTH characters and opens into block style when it does not; a
long or multi-line `doc` is a block scalar.  Values go through PyYAML's safe dumper, and the
text is read back before it is returned: should it not give the same data (a string PyYAML
cannot write in these styles), the plain safe_dump of the data is returned instead.
"""
from __future__ import annotations

import yaml

ORDER = ("specbuild", "name", "doc", "params", "inputs", "blocks", "networks", "layers", "outputs", "train", "tune")
_LAYER_FIRST = ("name", "type", "share")
WIDTH = 100


def spec_yaml(spec: dict) -> str:
    ordered = {key: spec[key] for key in sorted(spec, key=lambda k: ORDER.index(k) if k in ORDER else len(ORDER))}
    lines = []
    for key, value in ordered.items():
        lines += _doc(value) if key == "doc" and isinstance(value, str) else _entry(key, value, "")
    text = "\n".join(lines) + "\n"
    try:
        same = yaml.safe_load(text) == _plain(spec)
    except yaml.YAMLError:
        same = False
    # PyYAML's own layout, every character outside ASCII escaped, is the one that always reads back
    return text if same else yaml.safe_dump(spec, sort_keys=False)


def _entry(key, value, indent: str) -> list[str]:
    """`key: value` at `indent`: on one line where it fits, else opened up."""
    head = f"{indent}{_flow(key)}:"
    if _is_layers(value):
        return [head] + _layers(value, indent + "  ")
    line = f"{head} {_flow(value)}"
    if key == "inputs" and isinstance(value, dict) and value and not indent.strip():
        pass                        # as specs write them: one input a line
    elif (len(line) <= WIDTH and not _holds_layers(value)) or not isinstance(value, (dict, list)) or not value:
        return [line]
    if isinstance(value, dict):
        return [head] + [text for k, v in value.items() for text in _entry(k, v, indent + "  ")]
    return [head] + [f"{indent}  - {_flow(item)}" for item in value]


def _layers(layers: list, indent: str) -> list[str]:
    out = []
    for layer in layers:
        ordered = {k: layer[k] for k in _LAYER_FIRST if k in layer}
        nested = {k: v for k, v in layer.items() if k not in ordered and _is_layers(v)}
        ordered.update({k: v for k, v in layer.items() if k not in ordered and k not in nested})
        line = f"{indent}- {_flow(ordered)}"
        if not nested and len(line) <= WIDTH:
            out.append(line)
            continue
        first = True
        for key, value in {**ordered, **nested}.items():
            prefix = f"{indent}- " if first else f"{indent}  "
            first = False
            if _is_layers(value):
                out.append(f"{prefix}{_flow(key)}:")
                out += _layers(value, indent + "    ")
            else:
                out.append(f"{prefix}{_flow(key)}: {_flow(value)}")
    return out


class _BlockDumper(yaml.SafeDumper):
    """Writes a string with line breaks as a literal block (|), a long one folded (>)."""


def _block_string(dumper, text: str):
    style = "|" if "\n" in text.rstrip("\n") else ">" if len(text) > WIDTH // 2 else None   # > wraps long lines
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_BlockDumper.add_representer(str, _block_string)


def _doc(text: str) -> list[str]:
    if "\n" not in text.rstrip("\n") and len(f"doc: {_flow(text)}") <= WIDTH:
        return [f"doc: {_flow(text)}"]
    dumped = yaml.dump({"doc": text}, Dumper=_BlockDumper, width=WIDTH - 24, allow_unicode=True, sort_keys=False)
    return dumped.rstrip("\n").splitlines()


def _holds_layers(value) -> bool:
    """A block, a network, or a mapping of them: always opened, so that its layers go a line each."""
    return isinstance(value, dict) and any(_is_layers(v) or _holds_layers(v) for v in value.values())


def _is_layers(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) and "type" in v for v in value)


def _flow(value) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=float("inf"), sort_keys=False, allow_unicode=True)
    return text.removesuffix("\n...\n").strip()      # a plain scalar's document end marker


def _plain(value):
    """The spec as YAML reads it back (tuples are lists)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
