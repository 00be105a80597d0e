"""A ModuleList looped over in forward, as one spec layer.

`for block in self.h: x = block(x)` calls the list's items one after another; traced,
they are calls of `h.0`, `h.1`...  Called as such a chain (each item once, in order, on the
output of the one before, which nothing else reads) they become one Sequential named `h`,
whose keys are the list's: `h.0.fc.weight`.  Any other use has no spec form and is refused,
saying what breaks the chain.
"""
from __future__ import annotations

from torch import nn

from ..errors import SpecError


def list_of(root: nn.Module, target: str) -> str | None:
    """The direct child ModuleList that `target` (`h.0`) is an item of, or None."""
    parent, dot, item = target.rpartition(".")
    if not dot or "." in parent or not item.isdigit():
        return None
    return parent if isinstance(getattr(root, parent, None), nn.ModuleList) else None


def fold_chain(reader, name: str) -> None:
    """In `reader` (a GraphReader that has read its module), the calls of ModuleList `name`'s items as one Sequential layer `name`: each item called
    once, in order, on the output of the one before, which nothing else reads.  Anything
    else has no spec form (a Sequential is such a chain) and is refused, saying why."""
    at = [i for i, layer in enumerate(reader.layers) if list_of(reader.module, layer["name"]) == name]
    items = [reader.layers[i] for i in at]
    last = items[-1]["name"]
    problem = _chain_problem(reader, name, at, items)
    if problem:
        raise SpecError(f"{reader.where}: the ModuleList `{name}` is not called as a chain: {problem}",
                        hint="a spec writes a stack as a Sequential: each item once, in order, on the output "
                        "of the one before; give the items names of their own (self.a, self.b) otherwise")
    sequential = {"name": name, "type": "Sequential",
                  "layers": [{k: v for k, v in layer.items() if k not in ("name", "in")} for layer in items],
                  "in": items[0]["in"]}
    reader.layers[at[0]:at[-1] + 1] = [sequential]
    for layer in reader.layers[at[0] + 1:]:
        layer["in"] = _renamed(layer["in"], last, name)
        if "forward" in layer:
            layer["forward"] = {k: _renamed(v, last, name) for k, v in layer["forward"].items()}
    reader.outputs = _renamed(reader.outputs, last, name)
    for node, value in reader.values.items():
        if value == last:
            reader.values[node] = name


def _chain_problem(reader, name: str, at: list, items: list) -> str | None:
    """Why the calls of ModuleList `name`'s items are no chain, or None."""
    size = len(reader.module.get_submodule(name))
    shared = next((layer for layer in reader.layers if str(layer.get("share", "")).startswith(name + ".")), None)
    if shared is not None:
        return f"{shared['share']} is called more than once"
    names = [layer["name"] for layer in items]
    if names != [f"{name}.{i}" for i in range(size)]:
        return f"its {size} items are called as {', '.join(names)}"
    between = next((reader.layers[i] for i in range(at[0], at[-1]) if i not in at), None)
    if between is not None:
        return f"`{between['name']}` ({between.get('type')}) runs between its items"
    for earlier, later in zip(items, items[1:]):
        if later["in"] != earlier["name"] or "forward" in later:
            return f"{later['name']} reads {', '.join(map(str, _refs(later)))}, not only {earlier['name']}"
    inner = {layer["name"] for layer in items[:-1]}
    reading = next((layer["name"] for layer in reader.layers[at[-1] + 1:] if inner & set(_refs(layer))), None)
    if reading is not None or inner & set(_output_names(reader.outputs)):
        return f"an inner item's output is read by {reading or 'the outputs'}"
    return None


def _refs(layer: dict) -> list:
    """The node names a layer reads: its `in:` and its `forward:` values."""
    ins = layer.get("in")
    return (ins if isinstance(ins, list) else [ins]) + list((layer.get("forward") or {}).values())


def _output_names(outputs) -> list:
    return list(outputs.values()) if isinstance(outputs, dict) else list(outputs) if isinstance(outputs, list) \
        else [outputs]


def _renamed(value, old: str, new: str):
    """`value` (a node name, or a list or dict of them) with the node `old` called `new`."""
    if isinstance(value, list):
        return [_renamed(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _renamed(v, old, new) for k, v in value.items()}
    return new if value == old else value
