"""The uses of one block class whose Sequential layers hold different numbers of items,
laid over one another so that one definition serves them all.

torchvision's InvertedResidual appends its 1x1 expansion conv to `conv` only when its
expansion ratio is not 1: that use's `conv` has three items, the others' four.  Each
shorter list is aligned to the longest, item by item, by the kinds of layers in them
(the alignment that leaves the fewest values differing); an item a use lacks is a copy of
the longest one's, marked ABSENT, which becomes `when:` in the definition.  A spec's
Sequential numbers the items it keeps as torch's append does, so the keys agree.
"""
from __future__ import annotations

import collections
import copy
import itertools
import math

ABSENT = "__absent__"
_MOST_ALIGNMENTS = 256            # ways to lay a short list over a long one, tried at the most


class NoFit(Exception):
    """These uses cannot be one definition."""


def type_tree(value):
    """The nested layers' types: a layer may change its arguments between uses, not its parts."""
    if isinstance(value, dict):
        return tuple((k, type_tree(v)) for k, v in value.items() if isinstance(v, (dict, list)) or k == "type")
    if isinstance(value, list):
        return tuple(type_tree(v) for v in value if isinstance(v, (dict, list)))
    return value


def align_sequentials(bodies: list[dict]) -> list[dict]:
    """Copies of `bodies` in which every use's top-level Sequential of one name has as many
    items as the longest: the items a use lacks are the longest one's, marked ABSENT."""
    bodies = copy.deepcopy(bodies)
    by_name: dict[str, list[dict]] = collections.defaultdict(list)
    for body in bodies:
        for layer in body["layers"]:
            if layer.get("type") == "Sequential" and isinstance(layer.get("layers"), list):
                by_name[layer["name"]].append(layer)
    for layers in by_name.values():
        longest = max(layers, key=lambda layer: len(layer["layers"]))["layers"]
        for layer in layers:
            if len(layer["layers"]) < len(longest):
                layer["layers"] = _aligned(layer["layers"], longest)
    return bodies


def _aligned(items: list, template: list) -> list:
    if math.comb(len(template), len(items)) > _MOST_ALIGNMENTS:
        raise NoFit
    best = None
    for slots in itertools.combinations(range(len(template)), len(items)):
        if any(type_tree(template[s]) != type_tree(item) for s, item in zip(slots, items)):
            continue
        differing = sum(_differing(template[s], item) for s, item in zip(slots, items))
        if best is None or differing < best[0]:
            best = (differing, slots)
    if best is None:
        raise NoFit
    out = [dict(copy.deepcopy(item), **{ABSENT: True}) for item in template]
    for slot, item in zip(best[1], items):
        out[slot] = item
    return out


def _differing(a, b) -> int:
    """How many values two layers of one kind differ in (their nested layers' too)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return sum(_differing(a.get(k), b.get(k)) for k in set(a) | set(b))
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return sum(_differing(x, y) for x, y in zip(a, b))
    return int(a != b)


def is_absent(value) -> bool:
    return isinstance(value, dict) and bool(value.get(ABSENT))
