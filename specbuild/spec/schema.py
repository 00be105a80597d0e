"""The JSON Schema (2020-12) of the spec format, generated from the registry.

Every layer type, loss, optimizer and scheduler gets its own argument
sub-schema, chosen by its `type` with if/then, so that both the validator and
editors that read JSON Schema (the YAML language server) know each type's
arguments.  `schemas/spec.schema.json` is this module's output for the built-in
registry; a test fails when it is stale.  Regenerate with

    python -m specbuild.spec.schema
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .. import registry
from ..catalog_gen import with_bounds
from ..inputs import DTYPES
from ..shapes.core import INFERRED_ARGS

SCHEMA_ID = "urn:specbuild:spec:1"
CHECKED_IN = Path(__file__).resolve().parents[2] / "schemas" / "spec.schema.json"
INSTALLED = Path(__file__).parents[1] / "spec.schema.json"

# Keys a layer node has besides its type's arguments.
LAYER_KEYS = {
    "name": {"$ref": "#/$defs/identifier", "description": "The node's name; a module's name in the state_dict."},
    "type": {"type": "string", "description": "A layer type, tensor function, wrapper or block name."},
    "in": {"$ref": "#/$defs/refs", "description": "Input node(s); default: the previous layer."},
    "repeat": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 10_000}, {"$ref": "#/$defs/variable"},
                         {"type": "array", "minItems": 1, "maxItems": 10_000,
                          "items": {"type": "object", "propertyNames": {"$ref": "#/$defs/identifier"}}}],
               "description": "Chain this many fresh copies, named name.0, name.1, ...; a list gives "
                              "each copy's own arguments."},
    "when": {"anyOf": [{"type": "boolean"}, {"$ref": "#/$defs/variable"}],
             "description": "Leave the layer out when false; a reference to it then reads its (first) input."},
    "forward": {"type": "object", "propertyNames": {"$ref": "#/$defs/identifier"}, "minProperties": 1,
                "additionalProperties": {"anyOf": [{"type": ["boolean", "number", "null"]}, {"$ref": "#/$defs/ref"},
                                                   {"$ref": "#/$defs/variable"}]},
                "description": "Arguments of the layer's forward call: a flag (need_weights: false) or "
                               "the node whose tensor it takes (attn_mask: mask)."},
    "tie": {"type": "object", "propertyNames": {"$ref": "#/$defs/identifier"}, "minProperties": 1,
            "additionalProperties": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)+$"},
            "description": "Make a parameter of this layer the same tensor as another layer's: "
                           "{weight: wte.weight}."},
    "share": {"$ref": "#/$defs/identifier", "description": "Apply this named layer again, sharing its weights."},
    "doc": {"type": "string"},
}
TRAIN_KEYS_MATCHING_ARGS = ("on", "target", "weight")
# torch's integers are 64-bit: every integer a spec gives torch is bounded so (the values of
# `params:` are not: they are checked where they are used).
INT64 = {"minimum": -2**63, "maximum": 2**63 - 1}


def _with_variables(schema: dict) -> dict:
    """An argument may also be a `${name}` variable."""
    if not schema:
        return {}
    return {"anyOf": [schema, {"$ref": "#/$defs/variable"}]}


def _args_def(entry_args: dict, inferred=(), extra_keys=None) -> dict:
    properties = {key: True for key in (extra_keys or {})}
    required = []
    for arg, spec in entry_args.items():
        if arg in TRAIN_KEYS_MATCHING_ARGS and arg in properties:
            continue   # a loss's `weight:` is its share of the sum, not CrossEntropyLoss(weight=...)
        properties[arg] = _with_variables(spec["schema"])
        if spec["required"] and arg not in inferred:
            required.append(arg)
    out = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        out["required"] = sorted(required)
    return out


def _dispatch(prefix: str, names) -> list:
    return [{"if": {"properties": {"type": {"const": name}}, "required": ["type"]},
             "then": {"$ref": f"#/$defs/{prefix}.{name}"}} for name in sorted(names)]


def build_schema(types: dict | None = None, *, dispatch: bool = True) -> dict:
    """The whole schema; `types` defaults to every type registered now.

    With dispatch=False, layer nodes are not matched to their type's arguments
    (the if/then over every type); the validator does that itself, node by node,
    against the same `layer.<Type>` definitions, which is ~10x faster.
    """
    types = registry.layer_types() if types is None else types
    by_type = _dispatch("layer", types) if dispatch else []
    defs: dict = {
        "identifier": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
        "variable": {"type": "string", "pattern": r"^\$\{[^{}]+\}$",
                     "description": "A param, or an expression over params: ${hidden}, ${2 * d}."},
        "ref": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
        "refs": {"anyOf": [{"$ref": "#/$defs/ref"}, {"type": "array", "items": {"$ref": "#/$defs/ref"}, "minItems": 1}]},
        "tensor_value": {"anyOf": [{"type": ["number", "boolean"]},
                                   {"type": "array", "items": {"$ref": "#/$defs/tensor_value"}}]},
        "shape": {"type": "array", "items": {"anyOf": [{"type": "integer", "minimum": 1}, {"$ref": "#/$defs/variable"}]}},
        "input": {"anyOf": [{"$ref": "#/$defs/shape"}, {
            "type": "object", "required": ["shape"], "additionalProperties": False,
            "properties": {"shape": {"$ref": "#/$defs/shape"},
                           "dtype": {"enum": list(DTYPES)},
                           "doc": {"type": "string"}}}]},
        "inputs": {"type": "object", "propertyNames": {"$ref": "#/$defs/identifier"},
                   "additionalProperties": {"$ref": "#/$defs/input"}, "minProperties": 1},
        "outputs": {"anyOf": [{"$ref": "#/$defs/ref"},
                              {"type": "array", "items": {"$ref": "#/$defs/ref"}, "minItems": 1},
                              {"type": "object", "propertyNames": {"$ref": "#/$defs/identifier"},
                               "additionalProperties": {"$ref": "#/$defs/ref"}, "minProperties": 1}]},
        "layers": {"type": "array", "items": {"$ref": "#/$defs/layer"}, "minItems": 1},
        "layer": {"type": "object", "properties": LAYER_KEYS, "allOf": by_type},
        "nested_layer": {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}},
                         "allOf": by_type},
        "graph": {"type": "object", "additionalProperties": False, "required": ["layers"],
                  "properties": {"doc": {"type": "string"}, "inputs": {"$ref": "#/$defs/inputs"},
                                 "layers": {"$ref": "#/$defs/layers"}, "outputs": {"$ref": "#/$defs/outputs"}}},
        "block": {"type": "object", "additionalProperties": False, "required": ["layers"],
                  "properties": {"doc": {"type": "string"},
                                 "params": {"type": "object", "propertyNames": {"$ref": "#/$defs/identifier"},
                                            "description": "The block's arguments and their defaults; "
                                                           "null: each use must give it."},
                                 "inputs": {"type": "array", "items": {"$ref": "#/$defs/identifier"}, "minItems": 1},
                                 "layers": {"$ref": "#/$defs/layers"}, "outputs": {"$ref": "#/$defs/outputs"}}},
    }
    for name, entry in types.items():
        defs[f"layer.{name}"] = _args_def(entry.args, INFERRED_ARGS.get(name, ()), LAYER_KEYS)
    defs.update(_train_defs())
    defs = {name: with_bounds(schema, INT64, types=("integer",)) for name, schema in defs.items()}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "specbuild spec",
        "description": "A PyTorch model, and how to train it, written as data. See docs/spec-format.md.",
        "type": "object",
        "required": ["specbuild", "name"],
        "additionalProperties": False,
        "properties": {
            "specbuild": {"const": 1, "description": "The format's version."},
            "name": {"$ref": "#/$defs/identifier"},
            "doc": {"type": "string"},
            "params": {"type": "object", "propertyNames": {"$ref": "#/$defs/identifier"},
                       "additionalProperties": {"type": ["integer", "number", "string", "boolean", "array", "null"]}},
            "inputs": {"$ref": "#/$defs/inputs"},
            "layers": {"$ref": "#/$defs/layers"},
            "outputs": {"$ref": "#/$defs/outputs"},
            "blocks": {"type": "object", "propertyNames": {"$ref": "#/$defs/identifier"},
                       "additionalProperties": {"$ref": "#/$defs/block"}},
            "networks": {"type": "object", "propertyNames": {"$ref": "#/$defs/identifier"},
                         "additionalProperties": {"$ref": "#/$defs/graph"}, "minProperties": 1},
            "train": {"$ref": "#/$defs/train"},
            "tune": {"$ref": "#/$defs/tune"},
        },
        "$defs": defs,
    }


def _train_defs() -> dict:
    catalog = registry.CATALOG
    integer, positive = {"type": "integer"}, {"type": "integer", "minimum": 1}
    defs = {
        "train": {"type": "object", "additionalProperties": False, "properties": {
            "task": {"enum": ["classification", "regression", "reconstruction", "multi_output", "gan"]},
            "data": {"$ref": "#/$defs/data"},
            "epochs": {"type": "integer", "minimum": 0},
            "loss": {"anyOf": [{"$ref": "#/$defs/loss"}, {"type": "array", "items": {"$ref": "#/$defs/loss"}, "minItems": 1}]},
            "optimizer": {"$ref": "#/$defs/optimizer"},
            "scheduler": {"$ref": "#/$defs/scheduler"},
            "metrics": {"type": "array", "items": {"enum": list(registry.METRIC_NAMES)}},
            "monitor": {"type": "string", "description": "Metric that picks the best checkpoint, e.g. val_accuracy."},
            "early_stopping": {"type": "object", "additionalProperties": False,
                               "properties": {"patience": positive, "min_delta": {"type": "number", "minimum": 0}}},
            "clip_grad_norm": {"type": "number", "minimum": 0,
                               "description": "Clip the gradients' norm to this value; 0: no clipping."},
            "seed": integer,
            "checkpoint_every": dict(positive, description="Also write last.pt every this many optimizer steps, "
                                     "with the position in the epoch, so a killed run resumes from the next batch."),
            "device": {"enum": ["auto", "cpu", "cuda", "mps"]},
            "generator": {"$ref": "#/$defs/identifier"},
            "discriminator": {"$ref": "#/$defs/identifier"},
            "latent_dim": positive,
            "precision": {"enum": ["fp32", "bf16", "fp16"],
                          "description": "The training step's autocast dtype: fp32 (none), bf16, or fp16 with "
                                         "loss scaling. Weights stay float32."},
            "compile": {"type": "boolean", "description": "torch.compile the model the training step calls."},
            "fast_step": {"type": "boolean", "description": "torch.compile with mode reduce-overhead (CUDA "
                                                           "graphs): small models on CUDA only."},
            "log": {"type": "array", "items": {"enum": ["tensorboard"]}, "uniqueItems": True,
                    "description": "Where else the run logs: tensorboard (event files in the run folder's "
                                   "tensorboard/; needs the tensorboard extra)."},
        }},
        "data": {"anyOf": [{"type": "string"}, {"type": "object", "additionalProperties": False, "properties": {
            "dataset": {"type": "string"}, "batch_size": positive, "normalize": {"enum": ["standard", "unit", "symmetric"]},
            "limit": positive, "val_split": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}, "target": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
            "test": {"type": "string"}, "root": {"type": "string"}, "shuffle": {"type": "boolean"},
            "path": {"type": "string"}, "samples": positive, "seed": integer, "num_embeddings": positive,
            "vocab_size": {"type": "integer", "minimum": 2},
            "task": {"enum": ["classification", "regression"]}}}]},
    }
    for group, def_name, extra in (("losses", "loss", {"on": {"$ref": "#/$defs/ref"}, "target": {"type": "string"},
                                                        "weight": {"type": "number", "minimum": 0}}),
                                   ("optimizers", "optimizer", {}),
                                   ("schedulers", "scheduler", {"interval": {"enum": ["epoch", "step"]}})):
        defs[def_name] = {"type": "object", "required": ["type"],
                          "properties": {"type": {"enum": registry.catalog_names(group)}, **extra},
                          "allOf": _dispatch(def_name, catalog[group])}
        for name, entry in catalog[group].items():
            defs[f"{def_name}.{name}"] = _args_def(entry["args"], registry.FILLED_BY_TRAINER.get(name, ()), {"type": True, **extra})
    from .tune_checks import tune_schema     # the tune section's schema lives with its checks
    defs["tune"] = tune_schema()
    for name in ("train", "data"):   # a number or flag of train: may be a ${...} too, as layer arguments may
        _allow_variables(defs[name])
    return defs


def _allow_variables(schema: dict) -> None:
    """Let every integer, number or boolean property of `schema` (or of its object form) be a ${...}."""
    for form in schema.get("anyOf", [schema]):
        for key, prop in (form.get("properties") or {}).items():
            if prop.get("type") in ("integer", "number", "boolean"):
                form["properties"][key] = _with_variables(prop)


def render(schema: dict) -> str:
    return json.dumps(schema, indent=1, sort_keys=True) + "\n"


def load_installed() -> dict:
    """The built-in schema as shipped; what `specbuild validate` uses without user types."""
    for path in (INSTALLED, CHECKED_IN):
        if path.exists():
            return json.loads(path.read_text())
    return build_schema(registry.BUILTIN_TYPES)


def main(argv=None) -> int:
    # specbuild/spec.schema.json is a link to this file, so that it installs with the package.
    CHECKED_IN.write_text(render(build_schema(registry.BUILTIN_TYPES)))
    print(f"wrote {CHECKED_IN}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
