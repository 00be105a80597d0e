"""The uses of one block class merged into one block definition with params.

Each use of a class was traced on its own (a ResNet stage's first BasicBlock has a
`downsample`, the others not; their widths differ).  Their layers are laid over the
fullest one's: a value that differs between uses becomes a param (one param for values
that always agree, `${2 * planes}` for one that is always a multiple of another), a
layer some uses lack gets `when:` and a boolean param, provided that where it is
missing its readers read its first input instead, as `when: false` makes them.  Uses
that do not fit one definition keep as few as fit (`Block`, `Block_2`).  Inner classes are
merged before the blocks that use them, so an outer block sees its inner blocks' args.
"""
from __future__ import annotations

import collections
import copy
import itertools
import json
from dataclasses import dataclass, field

import networkx as nx

from .. import registry
from .sequential_items import ABSENT, NoFit as _NoFit, align_sequentials, is_absent, type_tree

STRUCTURE = ("name", "in", "share", "type")     # compared as they are; every other value may become a param
_MISSING = object()


@dataclass(eq=False)
class BlockUse:
    id: int
    cls: str
    body: dict                     # inputs, layers, outputs as traced (inner uses still BlockUse)
    name: str = ""                 # the block it became
    args: dict = field(default_factory=dict)


def merge_blocks(uses: list[BlockUse], root_layers: list) -> tuple[dict, list]:
    """(blocks: name -> definition, the root's layers) with every BlockUse written out."""
    by_class: dict[str, list[BlockUse]] = collections.defaultdict(list)
    for use in uses:
        by_class[use.cls].append(use)
    blocks: dict = {}
    for cls in _inner_first(by_class):
        bodies = [dict(use.body, layers=render(use.body["layers"])) for use in by_class[cls]]
        groups = _fit(bodies)
        for n, (indices, definition, values) in enumerate(groups):
            name = _free(cls if n == 0 else f"{cls}_{n + 1}", blocks)
            blocks[name] = definition
            for i, args in zip(indices, values):
                by_class[cls][i].name, by_class[cls][i].args = name, args
    return blocks, render(root_layers)


def _inner_first(by_class: dict) -> list[str]:
    order = nx.DiGraph()
    order.add_nodes_from(by_class)
    for cls, uses in by_class.items():
        for use in uses:
            for inner in _uses_in(use.body["layers"]):
                order.add_edge(inner.cls, cls)
    return list(nx.lexicographical_topological_sort(order, key=list(by_class).index))


def _uses_in(value):
    if isinstance(value, BlockUse):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _uses_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _uses_in(item)


def render(layers: list) -> list:
    """Layers with each block use written as its block's name and args; a Sequential of uses of
    one block as that block with `repeat:` (its copies' own args in the list)."""
    out = []
    for layer in layers:
        layer = dict(layer)
        if isinstance(layer.get("type"), BlockUse):
            use = layer["type"]
            layer = {"name": layer["name"], "type": use.name, **use.args,
                     **{k: v for k, v in layer.items() if k not in ("name", "type")}}
        elif layer.get("type") == "Sequential" and any(isinstance(i.get("type"), BlockUse) for i in layer["layers"]):
            layer = _sequence_of_uses(layer)
        out.append(layer)
    return out


def _sequence_of_uses(layer: dict) -> dict:
    items = layer["layers"]
    names = {item["type"].name if isinstance(item["type"], BlockUse) else None for item in items}
    if len(names) == 1 and None not in names:
        copies = [dict(item["type"].args) for item in items]
        common = {k: v for k, v in copies[0].items() if all(c.get(k, _MISSING) == v for c in copies)}
        per_copy = [{k: v for k, v in c.items() if k not in common} for c in copies]
        repeat = len(items) if not any(per_copy) else per_copy
        return {"name": layer["name"], "type": names.pop(), **common, "repeat": repeat,
                **{k: v for k, v in layer.items() if k not in ("name", "type", "layers")}}
    rendered = [{"type": i["type"].name, **i["type"].args} if isinstance(i["type"], BlockUse) else i for i in items]
    return dict(layer, layers=rendered)


# --- fitting one class's uses to definitions ---------------------------------------------------

def _fit(bodies: list[dict]) -> list:
    """[(indices of the uses, the definition, each use's args)]: one definition if the uses fit
    one, else as few as a first-fit pass finds: each use joins the first group it fits with
    (torchvision's MobileNetV2: the blocks without an expansion conv, and the others)."""
    try:
        definition, values = _one_definition(bodies)
        return [(list(range(len(bodies))), definition, values)]
    except _NoFit:
        pass
    groups: list[tuple[list[int], tuple]] = []       # (the uses, their definition and args so far)
    for i in range(len(bodies)):
        for n, (group, _) in enumerate(groups):
            try:
                groups[n] = (group + [i], _one_definition([bodies[j] for j in group + [i]]))
            except _NoFit:
                continue
            break
        else:
            groups.append(([i], _one_definition([bodies[i]])))
    return [(group, *fitted) for group, fitted in groups]


def _definition(body: dict, params: dict) -> dict:
    out = {}
    if params:
        out["params"] = params
    if body["inputs"] != ["x"]:
        out["inputs"] = list(body["inputs"])
    layers = copy.deepcopy(body["layers"])
    previous = body["inputs"][0] if len(body["inputs"]) == 1 else None
    for layer in layers:                     # `in:` left out where it reads the layer above
        if layer.get("in") == previous and previous is not None:
            del layer["in"]
        previous = layer["name"]
    out["layers"] = layers
    if body["outputs"] != body["layers"][-1]["name"]:
        out["outputs"] = body["outputs"]
    return out


def _one_definition(bodies: list[dict]) -> tuple[dict, list[dict]]:
    if all(b == bodies[0] for b in bodies):
        return _definition(bodies[0], {}), [{} for _ in bodies]
    if any(b["inputs"] != bodies[0]["inputs"] for b in bodies):
        raise _NoFit
    bodies = align_sequentials(bodies)
    base = max(bodies, key=lambda b: len(b["layers"]))
    order = [layer["name"] for layer in base["layers"]]
    present = [{layer["name"] for layer in b["layers"]} for b in bodies]
    for b in bodies:
        names = [layer["name"] for layer in b["layers"]]
        if [n for n in order if n in set(names)] != names:
            raise _NoFit
    base = dict(base, layers=_laid_over(base, bodies, present))
    template = {layer["name"]: layer for layer in base["layers"]}
    params: dict = {}
    vectors: dict = {}                          # param -> its value in each use (_MISSING where unused)
    layers = []
    for name in order:
        layer = copy.deepcopy(template[name])
        users = [i for i in range(len(bodies)) if name in present[i]]
        for path in _leaf_paths([{l["name"]: l for l in bodies[i]["layers"]}[name] for i in users]):
            values = [_leaf(bodies[i], name, path) if i in users else _MISSING for i in range(len(bodies))]
            defined = [v for v in values if v is not _MISSING]
            if all(v == defined[0] for v in defined):
                _set_leaf(layer, path, defined[0])
                continue
            stem = next(str(k) for k in reversed(path) if isinstance(k, str))
            _set_leaf(layer, path, _param_for(stem, values, params, vectors))
        if len(users) < len(bodies):
            pattern = [name in p for p in present]
            layer["when"] = _param_for(f"with_{name}", pattern, params, vectors, boolean=True)
        for index, item in enumerate(layer.get("layers") or []):     # an item some uses' Sequential lacks
            held = [_MISSING if i not in users else not is_absent(_layer_of(bodies[i], name)["layers"][index])
                    for i in range(len(bodies))]
            if item.pop(ABSENT, False) or False in held:
                item["when"] = _param_for(f"with_{name}_{index}", held, params, vectors, boolean=True)
        layers.append(layer)
    for name, values in vectors.items():
        defined = [v for v in values if v is not _MISSING]
        params[name] = collections.Counter(json.dumps(v) for v in defined).most_common(1)[0][0]
        params[name] = json.loads(params[name])
    args = [{n: vectors[n][i] for n in params if vectors[n][i] is not _MISSING and vectors[n][i] != params[n]}
            for i in range(len(bodies))]
    return _definition(dict(base, layers=layers), params), args


def _laid_over(base: dict, bodies: list[dict], present: list[set]) -> list:
    """The base's layers, the other uses laid over them: where a layer is missing, its readers
    read its first input (what `when: false` gives).  A sum or product of two that some uses
    lack may take its other input first (`x + conv` written as `conv + x`, the same values), so
    that the uses without it read what they do read; else _NoFit."""
    movable = [layer for layer in base["layers"] if _swappable(layer, layer.get("in"))
               and any(layer["name"] not in p for p in present)][:3]
    for firsts in itertools.product(*[range(len(layer["in"])) for layer in movable]):
        turned = {layer["name"]: [layer["in"][k]] + layer["in"][:k] + layer["in"][k + 1:]
                  for layer, k in zip(movable, firsts)}
        layers = [dict(layer, **{"in": turned[layer["name"]]}) if layer["name"] in turned else layer
                  for layer in base["layers"]]
        if all(_fits(layers, base["outputs"], body, used) for body, used in zip(bodies, present)):
            return layers
    raise _NoFit


def _fits(layers: list, outputs, body: dict, present: set) -> bool:
    alias = _aliases(layers, present)
    template = {layer["name"]: layer for layer in layers}
    return (all(_structure(template[layer["name"]], alias) == _structure(layer, {}) for layer in body["layers"])
            and _mapped(outputs, alias) == body["outputs"])


def _swappable(layer: dict, ins) -> bool:
    """A sum or product of two: a + b is b + a, to the bit (of three, the order of the adds counts)."""
    return layer.get("type") in ("add", "mul") and isinstance(ins, list) and len(ins) == 2


def _aliases(layers: list, present: set) -> dict:
    alias: dict = {}
    for layer in layers:
        if layer["name"] not in present:
            refs = layer.get("in")
            first = refs[0] if isinstance(refs, list) else refs
            alias[layer["name"]] = alias.get(first, first)
    return alias


def _mapped(value, alias: dict):
    if isinstance(value, str):
        return alias.get(value, value)
    if isinstance(value, list):
        return [_mapped(v, alias) for v in value]
    if isinstance(value, dict):
        return {k: _mapped(v, alias) for k, v in value.items()}
    return value


def _structure(layer: dict, alias: dict) -> tuple:
    ins = _mapped(layer.get("in"), alias)
    if _swappable(layer, ins):
        ins = sorted(ins, key=str)
    return (layer["name"], ins, layer.get("share"), str(layer.get("type")), type_tree(layer))


def _leaf_paths(layers: list) -> list[tuple]:
    """Every argument path (also inside nested layers) any of these uses of one layer gives."""
    paths: list[tuple] = []

    def walk(value, path):
        if isinstance(value, dict):
            for k, v in value.items():
                if not path and k in STRUCTURE or k in ("type", ABSENT):
                    continue
                walk(v, path + (k,))
        elif isinstance(value, list) and any(isinstance(v, dict) for v in value):
            for i, v in enumerate(value):
                walk(v, path + (i,))
        elif path not in paths:
            paths.append(path)

    for layer in layers:
        walk(layer, ())
    return paths


def _layer_of(body: dict, name: str) -> dict:
    return next(layer for layer in body["layers"] if layer["name"] == name)


def _leaf(body: dict, name: str, path: tuple):
    """A use's value at `path` of layer `name`: given, or its type's default (none in an item
    the use lacks)."""
    value = _layer_of(body, name)
    owner = value
    for key in path:
        if is_absent(value):
            return _MISSING
        if isinstance(value, dict):
            owner = value
            if key not in value:
                entry = registry.lookup(owner.get("type"))
                about = entry.args.get(key) if entry else None
                if about is None or "default" not in about:
                    raise _NoFit
                return about["default"]
        value = value[key]
    return value


def _set_leaf(layer: dict, path: tuple, value) -> None:
    target = layer
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


def _param_for(stem: str, values: list, params: dict, vectors: dict, boolean: bool = False) -> str:
    """`${name}` of the param these per-use values are (an existing one when they agree with it
    wherever both are used, `${k * name}` when they are k times it), or a new param."""
    for name, known in vectors.items():
        if all(a is _MISSING or b is _MISSING or _same(a, b) for a, b in zip(values, known)):
            vectors[name] = [b if a is _MISSING else a for a, b in zip(values, known)]
            return "${" + name + "}"
    if not boolean:
        for name, known in vectors.items():
            k = _multiple(values, known)
            if k:
                return "${" + f"{k} * {name}" + "}"
    name = _free(stem, vectors)
    vectors[name] = list(values)
    params[name] = None
    return "${" + name + "}"


def _same(a, b) -> bool:
    """Equal and of one type: a boolean param is not an int param whose values are 0 and 1."""
    return type(a) is type(b) and a == b


def _multiple(values: list, known: list) -> int | None:
    pairs = [(a, b) for a, b in zip(values, known) if a is not _MISSING and b is not _MISSING]
    if not pairs or any(not (isinstance(a, int) and isinstance(b, int)) or isinstance(a, bool) or isinstance(b, bool)
                        or b == 0 or a % b for a, b in pairs):
        return None
    ks = {a // b for a, b in pairs}
    return ks.pop() if len(ks) == 1 and next(iter(ks)) > 1 else None


def _free(name: str, taken) -> str:
    out, n = name, 2
    while out in taken or registry.lookup(out) is not None:
        out, n = f"{name}_{n}", n + 1
    return out
