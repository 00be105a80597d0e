"""A spec's data as YAML a person would write: one line per layer where it fits.

Sections in the format's order; each layer a flow mapping `{name: fc1, type: Linear, ...}`,
except one holding nested layers (a Sequential), which lists them below it.  Values go
through PyYAML's safe dumper, so the text reads back to the same data.
"""
from __future__ import annotations

import yaml

ORDER = ("specbuild", "name", "doc", "params", "inputs", "blocks", "layers", "outputs", "train")
_LAYER_FIRST = ("name", "type", "share")
_WIDTH = 120


def spec_yaml(spec: dict) -> str:
    lines = []
    for key in sorted(spec, key=lambda k: ORDER.index(k) if k in ORDER else len(ORDER)):
        value = spec[key]
        if key == "blocks":
            lines.append("blocks:")
            for name, block in value.items():
                lines.append(f"  {name}:")
                for part, item in block.items():
                    if part == "layers":
                        lines.append("    layers:")
                        lines += _layers(item, "      ")
                    else:
                        lines.append(f"    {part}: {_flow(item)}")
        elif key == "layers":
            lines.append("layers:")
            lines += _layers(value, "  ")
        elif key == "inputs":
            lines.append("inputs:")
            lines += [f"  {name}: {_flow(shape)}" for name, shape in value.items()]
        else:
            lines.append(f"{key}: {_flow(value)}")
    text = "\n".join(lines) + "\n"
    assert yaml.safe_load(text) == _plain(spec), "the YAML does not read back to the spec"
    return text


def _layers(layers: list, indent: str) -> list[str]:
    out = []
    for layer in layers:
        ordered = {k: layer[k] for k in _LAYER_FIRST if k in layer}
        nested = {k: v for k, v in layer.items() if k not in ordered and _is_layers(v)}
        ordered.update({k: v for k, v in layer.items() if k not in ordered and k not in nested})
        line = f"{indent}- {_flow(ordered)}"
        if not nested and len(line) <= _WIDTH:
            out.append(line)
            continue
        first = True
        for key, value in {**ordered, **nested}.items():
            prefix = f"{indent}- " if first else f"{indent}  "
            first = False
            if _is_layers(value):
                out.append(f"{prefix}{key}:")
                out += _layers(value, indent + "    ")
            elif isinstance(value, dict) and "type" in value:
                out.append(f"{prefix}{key}: {_flow(value)}")
            else:
                out.append(f"{prefix}{key}: {_flow(value)}")
    return out


def _is_layers(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) and "type" in v for v in value)


def _flow(value) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=float("inf"), sort_keys=False)
    return text.removesuffix("\n...\n").strip()      # a plain scalar's document end marker


def _plain(value):
    """The spec as YAML reads it back (tuples are lists)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
