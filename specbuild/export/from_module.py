"""An nn.Module as a spec: `spec_from_module(module, example_inputs)`.

torch.fx traces the module one level deep (export/trace.py).  torch.nn layers become
layers with their constructor arguments (export/module_args.py), a Sequential of
layers a Sequential, and any other child module a block, traced in turn.  The uses of
one block class are then merged into one definition with params (export/merge.py):
what differs between them becomes a param, a layer some of them lack a `when:`.
Parameters that are one tensor under two names become `tie:`.  Submodule names are
kept, so the module's state_dict loads into the rebuilt model strictly.
"""
from __future__ import annotations

from torch import nn

from .. import registry
from ..errors import SpecError
from .merge import BlockUse, merge_blocks
from .module_args import layer_entry
from .trace import GraphReader


def spec_from_module(module: nn.Module, example_inputs, *, name: str | None = None, doc: str | None = None) -> dict:
    """The spec (plain data, ready for YAML) of `module`, whose forward takes `example_inputs`:
    a dict name -> tensor, or a tuple of tensors in forward's order (with a batch dim first)."""
    reader = _Importer()
    body = reader.body_of(module, type(module).__name__)
    inputs = _inputs(body["inputs"], example_inputs)
    blocks, layers = merge_blocks(reader.uses, body["layers"])
    spec = {"specbuild": 1, "name": identifier(name or type(module).__name__.lower())}
    if doc:
        spec["doc"] = doc
    spec["inputs"] = inputs
    if blocks:
        spec["blocks"] = blocks
    spec["layers"] = chain_by_default(layers, list(inputs))
    _tie(spec["layers"], module)
    if body["outputs"] != layers[-1]["name"]:
        spec["outputs"] = body["outputs"]
    return spec


class _Importer:
    def __init__(self):
        self.uses: list[BlockUse] = []       # every block use, inner ones before the blocks holding them

    def body_of(self, module: nn.Module, where: str) -> dict:
        return GraphReader(module, where, lambda name, child: self.child(name, child, f"{where}.{name}")).read()

    def child(self, name: str, module: nn.Module, where: str) -> dict:
        if _is_torch_layer(module):
            return layer_entry(module)
        if isinstance(module, nn.Sequential) and len(module):
            if all(_is_torch_layer(m) for m in module):
                return layer_entry(module)
            return {"type": "Sequential", "layers": [self.child(str(i), m, f"{where}.{i}") for i, m in enumerate(module)]}
        return self.block(module, where)

    def block(self, module: nn.Module, where: str) -> dict:
        body = self.body_of(module, where)
        use = BlockUse(len(self.uses), identifier(type(module).__name__), body)
        self.uses.append(use)
        entry = {"type": use}
        if isinstance(body["outputs"], (list, dict)):
            entry["__multi__"] = True
        return entry


def _is_torch_layer(module: nn.Module) -> bool:
    if isinstance(module, nn.Sequential):
        return len(module) > 0 and all(_is_torch_layer(m) for m in module)
    entry = registry.BUILTIN_TYPES.get(type(module).__name__)
    return entry is not None and entry.kind == "module" and type(module).__module__.startswith("torch.nn")


def _inputs(names: list, example) -> dict:
    tensors = example if isinstance(example, dict) else dict(zip(names, example if isinstance(example, (list, tuple))
                                                                 else (example,)))
    missing = [n for n in names if n not in tensors]
    if missing:
        raise SpecError(f"forward takes {', '.join(names)}, and no example input is given for {', '.join(missing)}",
                        hint="give one example tensor per input, with a batch dim first")
    return {input_name: input_entry(tensors[input_name]) for input_name in names}


def input_entry(example) -> list | dict:
    """A spec's `inputs:` entry for an example tensor (or fake tensor) with its batch dim first:
    one sample's shape, and its dtype unless it is float32."""
    shape = [int(size) for size in example.shape[1:]]
    dtype = str(example.dtype).removeprefix("torch.")
    return shape if dtype == "float32" else {"shape": shape, "dtype": "long" if dtype == "int64" else dtype}


def chain_by_default(layers: list, inputs: list) -> list:
    """Leave out `in:` where it reads the layer above (or the only input, for the first layer)."""
    previous = inputs[0] if len(inputs) == 1 else None
    for layer in layers:
        if "in" in layer and layer["in"] == previous and previous is not None:
            del layer["in"]
        previous = layer.get("name")
    return layers


def _tie(layers: list, module: nn.Module) -> None:
    """A parameter that is another's tensor: `tie:` on the top-level layer that holds the second name."""
    first: dict = {}
    by_name = {layer.get("name"): layer for layer in layers}
    for key, parameter in module.named_parameters(remove_duplicate=False):
        if id(parameter) not in first:
            first[id(parameter)] = key
            continue
        owner, _, param = key.rpartition(".")
        if owner in by_name and "." not in owner:
            by_name[owner].setdefault("tie", {})[param] = first[id(parameter)]
        else:
            raise SpecError(f"{key} is the same tensor as {first[id(parameter)]}, inside a block",
                            hint="only a top-level layer's parameter can be tied in an imported spec")


def identifier(text: str) -> str:
    out = "".join(c if c.isalnum() or c == "_" else "_" for c in text)
    return out if out and not out[0].isdigit() else "_" + out
