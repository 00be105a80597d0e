"""Random specs, and what happens to each: refused by `validate`, or built and run.

The promise under test: what `specbuild.spec.validate.check` accepts, `build_model` builds,
and a forward pass on inputs of the declared shapes and dtypes runs and gives exactly the
inferred output shapes and dtypes.  Two sources of specs, each case seeded by its own id
(so case "single-0042" is the same spec whatever the count):

- `single_layer(seed, i)`: one layer of type number i (round robin over every registered
  type), its arguments drawn from the registry's schema for it (mostly values of the right
  kind and size, now and then wrong ones), fed by 1 to 3 inputs of random shapes and dtypes;
- `mutation(seed, i)`: a shipped spec (specs/*.yaml) with one to three edits: a number
  changed, an argument dropped or renamed, a type swapped, an input's dtype or shape
  changed, a layer inserted, or one of the keys of real architectures added: `when:`,
  `tie:`, `forward:`, a `${...}` expression (sound, wrong or hostile), `repeat:` as a
  list, an argument given to a block.

`run(spec)` says what happened (an Outcome).  Integer inputs are drawn honestly: below every
index bound the spec declares (an Embedding's num_embeddings), and zeros (valid for any
bound) where a layer constrains the values further (MaxUnpool's indices, EmbeddingBag's
offsets); a value a spec cannot bound (ids that went through arithmetic) is no spec error.
Used by tests/test_property_runs.py (a bounded count) and benchmarks/fuzz.py (a large one).
"""
from __future__ import annotations

import copy
import random
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from specbuild import registry
from specbuild.errors import SpecError
from specbuild.inputs import DTYPES
from specbuild.shapes.core import INFERRED_ARGS
from specbuild.spec.loader import load_spec

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = {p.stem: load_spec(p).data for p in sorted((ROOT / "specs").glob("*.yaml"))}   # YAML 1.2: `on:` is a key
TYPES = sorted(registry.BUILTIN_TYPES)
MODULE_TYPES = [t for t in TYPES if registry.BUILTIN_TYPES[t].makes_module]
BATCH = 5                    # N in the forward pass: unlike the small dims the specs use
MAX_PARAMS = 30_000_000      # larger models are counted, not built (time and memory)
MAX_ELEMENTS = 2_000_000
WORDS = ["mean", "sum", "max", "nearest", "bilinear", "linear", "bicubic", "trilinear", "area", "relu",
         "gelu", "tanh", "none", "same", "valid", "zeros", "reflect", "replicate", "circular", "weight",
         "bias", "x", "[:, 0]", "[..., 1:]", "[0]", "[:, -1, :]", "[:, None]"]
ODD = ["x", 1.5, None, -1, 0, 10 ** 20, [], [1, 2], {"type": "ReLU"}, True]
# new names for a node or an input: plain ones, and ones Python or nn.Module may not take
NAMES = ["a", "h2", "out_1", "Layer", "class", "def", "None", "lambda", "return", "to", "float", "cuda",
         "type", "eval", "forward", "training", "state_dict", "graph", "code", "meta", "self", "torch"]


# --- generating ---------------------------------------------------------------------------------

def _int_for(name: str, rng: random.Random) -> int:
    if "dim" in name and not name.endswith(("_dim", "dims")) or name in ("dim0", "dim1", "index"):
        return rng.randint(-3, 3)
    return rng.choice([1, 1, 2, 2, 3, 4, 4, 6, 8] + ([0] if rng.random() < 0.1 else []))


def value(schema, name: str, rng: random.Random, depth: int):
    """A value for an argument described by a JSON Schema fragment: mostly of the right kind."""
    if not isinstance(schema, dict) or not schema:
        return _int_for(name, rng)
    if "enum" in schema:
        return rng.choice(schema["enum"])
    if "anyOf" in schema:
        return value(rng.choice(schema["anyOf"]), name, rng, depth)
    if schema.get("$ref", "").endswith("nested_layer"):
        return nested_layer(rng, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = rng.choice(kind)
    if kind == "integer":
        v = _int_for(name, rng)
        lo, hi = schema.get("minimum"), schema.get("maximum")
        return v if rng.random() < 0.1 else max(lo, v) if lo is not None and hi is None else v
    if kind == "number":
        return rng.choice([0.0, 0.1, 0.2, 0.5, 1.0, 1.5, 2.0, 1e-5])
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "string":
        return rng.choice(WORDS)
    if kind == "null":
        return None
    if kind == "array":
        n = schema.get("minItems", rng.randint(1, 3))
        n = max(n, min(schema.get("maxItems", n), rng.randint(1, 3)))
        if schema.get("items", {}).get("$ref", "").endswith("nested_layer"):
            return [nested_layer(rng, depth + 1) for _ in range(rng.randint(1, 3))]
        return [value(schema.get("items", {}), name, rng, depth) for _ in range(n)]
    return _int_for(name, rng)


def layer_args(type_name: str, rng: random.Random, depth: int = 0) -> dict:
    entry = registry.lookup(type_name)
    inferred = INFERRED_ARGS.get(type_name, ())
    args = {}
    for name, arg in entry.args.items():
        wanted = arg["required"] and name not in inferred
        if not (wanted and rng.random() < 0.95 or rng.random() < (0.15 if name in inferred else 0.35)):
            continue
        args[name] = rng.choice(ODD) if rng.random() < 0.04 else value(arg["schema"], name, rng, depth)
    if type_name.startswith("Transformer") and "Layer" not in type_name:   # a small layer to stack
        part = "decoder" if "Decoder" in type_name else "encoder"
        if rng.random() < 0.8 and f"{part}_layer" in entry.args:
            args[f"{part}_layer"] = {"type": f"Transformer{part.title()}Layer", "nhead": rng.choice([1, 2]),
                                     "dim_feedforward": 8}
    for name in ("dim_feedforward", "num_encoder_layers", "num_decoder_layers", "num_layers"):
        if name in entry.args and (name not in args or rng.random() < 0.7):
            args[name] = rng.choice([1, 2, 8] if name == "dim_feedforward" else [1, 2])
    return args


def nested_layer(rng: random.Random, depth: int) -> dict:
    common = ["Linear", "ReLU", "Conv1d", "Conv2d", "LayerNorm", "Dropout", "Tanh", "BatchNorm1d",
              "TransformerEncoderLayer", "Flatten", "Embedding"]
    type_name = rng.choice(common if rng.random() < 0.7 or depth > 1 else MODULE_TYPES)
    return {"type": type_name, **layer_args(type_name, rng, depth)}


def _shape(type_name: str, rng: random.Random) -> list:
    spatial = next((int(c) for c in ("1", "2", "3") if type_name.endswith(f"{c}d")), None)
    if spatial and rng.random() < 0.8:
        rank = spatial + rng.choice([1, 1, 1, 0])        # (C, *spatial), now and then unbatched-like
    elif type_name[:1].isupper() and rng.random() < 0.5 and any(k in type_name for k in ("RNN", "LSTM", "GRU", "Transformer", "Attention")):
        rank = rng.choice([1, 2, 2])
    else:
        rank = rng.choice([0, 1, 1, 2, 2, 3])
    return [rng.choice([1, 2, 3, 4, 4, 6, 8]) for _ in range(rank)]


def _dtype(rng: random.Random, integer: bool) -> str | None:
    if integer and rng.random() < 0.7:
        return rng.choice(["long", "int64", "int32"])
    r = rng.random()
    return None if r < 0.6 else "long" if r < 0.72 else rng.choice(list(DTYPES))


def single_layer(seed: int, i: int) -> dict:
    """Type number i: half the time from its schema alone, half from one of the shape oracle's
    cases (tests/test_shape_rules_vs_torch.py, mostly valid) with one thing changed now and then."""
    rng = random.Random(f"{seed}-single-{i}")
    type_name = TYPES[i % len(TYPES)]
    fitting = _oracle_cases(type_name)
    inputs, args = _from_case(rng, type_name, *rng.choice(fitting)) if fitting and rng.random() < 0.5 else \
        _from_schema(type_name, rng)
    layer = {"name": "out", "type": type_name, **args, "in": list(inputs)}
    layers = [layer]
    if type_name == "item":          # item picks from a multi-value: give it one
        layers = [{"name": "parts", "type": "chunk", "chunks": rng.randint(1, 3), "dim": -1, "in": "x0"},
                  dict(layer, **{"in": "parts"})]
    elif rng.random() < 0.08:        # now and then a 0-d tensor, or one without the batch dim
        layers = [dict(rng.choice(PRELUDES), name="pre", **{"in": "x0"}), dict(layer, **{"in": ["pre"] + layer["in"][1:]})]
    return {"specbuild": 1, "name": "fuzz", "inputs": inputs, "layers": layers}


PRELUDES = [{"type": "amax"}, {"type": "sum"}, {"type": "slice", "at": "[0]"}, {"type": "slice", "at": "[0]"}]


def _from_schema(type_name: str, rng: random.Random) -> tuple[dict, dict]:
    least, most = registry.lookup(type_name).inputs
    n = rng.randint(least, min(most, least + 2))
    if rng.random() < 0.03:
        n = rng.choice([least - 1, most + 1]) if least > 0 else n + 1
    first = _shape(type_name, rng)
    inputs = {}
    for k in range(max(n, 1)):
        shape = list(first) if k and rng.random() < 0.6 else _shape(type_name, rng)
        integer = type_name.startswith("Embedding") or (k == 1 and "Unpool" in type_name)
        dtype = _dtype(rng, integer)
        inputs[f"x{k}"] = shape if dtype is None else {"shape": shape, "dtype": dtype}
    if n == 0:
        inputs = {"x0": first}
    return inputs, layer_args(type_name, rng)


_CASES: dict = {}


def _oracle_cases(type_name: str) -> list:
    """The shape oracle's cases of a type whose inputs all have the batch first, as a spec's do."""
    if not _CASES:
        from test_shape_rules_vs_torch import CASES, LONG
        for name, found in CASES.items():
            _CASES[name] = [(args, inputs, LONG.get(name, ())) for args, inputs in (_batch_first(name, c) for c in found)
                            if all(isinstance(x, tuple) and x[:1] == ("N",) and "N" not in x[1:] for x in inputs)]
    return _CASES.get(type_name, [])


def _batch_first(name, case):
    """A sequence-first case (L, N, E) of a layer with batch_first as its batch-first twin."""
    args, inputs = case
    nested = args.get("encoder_layer") or args.get("decoder_layer")
    entry = registry.lookup(nested["type"] if nested else name)
    takes = entry is not None and "batch_first" in entry.args
    if not takes or (nested or args).get("batch_first") or not all(
            isinstance(x, tuple) and x[1:2] == ("N",) for x in inputs):
        return case
    args = copy.deepcopy(args)
    (args.get("encoder_layer") or args.get("decoder_layer") or args)["batch_first"] = True
    return args, [(x[1], x[0]) + x[2:] for x in inputs]


def _from_case(rng: random.Random, type_name: str, args: dict, shapes: list, long: tuple) -> tuple[dict, dict]:
    args, inputs = copy.deepcopy(args), {}
    for k, x in enumerate(shapes):
        dtype = "long" if k in long else None
        inputs[f"x{k}"] = list(x[1:]) if dtype is None else {"shape": list(x[1:]), "dtype": dtype}
    change = rng.random()
    name = rng.choice(list(inputs))
    described = registry.lookup(type_name).args
    if change < 0.1 and described:                # another value for one argument
        arg = rng.choice(list(described))
        args[arg] = value(described[arg]["schema"], arg, rng, 1)
    elif change < 0.15 and args:
        del args[rng.choice(list(args))]
    elif change < 0.25:                           # another dtype
        shape = inputs[name]["shape"] if isinstance(inputs[name], dict) else inputs[name]
        inputs[name] = {"shape": shape, "dtype": rng.choice(list(DTYPES))}
    elif change < 0.3:                            # another size
        shape = inputs[name]["shape"] if isinstance(inputs[name], dict) else inputs[name]
        if shape:
            shape[rng.randrange(len(shape))] = rng.choice([1, 2, 3, 5])
    return inputs, args


# --- mutating the shipped specs -----------------------------------------------------------------

def _layers(spec: dict) -> list:
    """Every layer mapping of a spec: top level, blocks, networks and nested ones."""
    found = []

    def walk(x):
        if isinstance(x, dict):
            if isinstance(x.get("type"), str):
                found.append(x)
            for k, v in x.items():
                if k != "train":
                    walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk({k: v for k, v in spec.items() if k != "train"})
    return found


def _input_maps(spec: dict) -> list:
    maps = [spec["inputs"]] if isinstance(spec.get("inputs"), dict) else []
    return maps + [n["inputs"] for n in (spec.get("networks") or {}).values() if isinstance(n.get("inputs"), dict)]


def _numbers(x, path=()):
    if isinstance(x, dict):
        for k, v in x.items():
            if k not in ("train", "doc", "specbuild"):
                yield from _numbers(v, path + (k,))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _numbers(v, path + (i,))
    elif isinstance(x, (int, float)) and not isinstance(x, bool):
        yield path


def _set(spec, path, v):
    for k in path[:-1]:
        spec = spec[k]
    spec[path[-1]] = v


def _get(spec, path):
    for k in path:
        spec = spec[k]
    return spec


# `${...}` texts a mutation may put in place of a number: sound, wrong and hostile ones
EXPRESSIONS = ["${2 * 3}", "${8 // 2}", "${2 ** 3}", "${1 + 1 == 2}", "${9**9**9}", "${__import__('os')}",
               "${(1).real}", "${[1][0]}", "${1 // 0}", "${nope + 1}", "${not 3}", "${" + "-(" * 30 + "1" + ")" * 30 + "}"]
WHEN = [True, False, "${1 == 1}", "${1 > 2}", 3, "yes", None, "${1 + 1}"]


def _new_keys(spec: dict, layers: list, rng: random.Random) -> str:
    """An edit with the keys of real architectures: `when:`, `tie:`, a `${...}` expression,
    `repeat:` as a list, or an argument given to a block."""
    layer = rng.choice(layers)
    what = rng.choice(["when", "tie", "expression", "repeat", "block_arg", "forward"])
    if what == "forward":
        named = [x["name"] for x in layers if isinstance(x.get("name"), str)] or ["x"]
        layer["forward"] = {rng.choice(["need_weights", "attn_mask", "is_causal", "mask", "hx", "input", "bogus"]):
                            rng.choice([False, True, None, 0.5, rng.choice(named)])}
        return f"{layer['type']}.forward = {layer['forward']}"
    if what == "when":
        layer["when"] = rng.choice(WHEN)
        return f"{layer['type']}.when = {layer['when']!r}"
    if what == "tie":
        named = [x for x in layers if isinstance(x.get("name"), str)] or [layer]
        source = rng.choice(named)
        layer["tie"] = {rng.choice(["weight", "bias", "weight_ih_l0", "x"]): f"{source.get('name', 'x')}."
                        + rng.choice(["weight", "bias", "running_mean", "0.weight"])}
        return f"{layer['type']}.tie = {layer['tie']}"
    if what == "expression":
        paths = list(_numbers(spec))
        if paths:
            path = rng.choice(paths)
            _set(spec, path, rng.choice(EXPRESSIONS))
            return f"{'.'.join(map(str, path))} = {_get(spec, path)}"
    if what == "repeat":
        layer["repeat"] = [rng.choice([{}, {"bias": False}, {"p": 0.5}, {"out_features": 4}])
                           for _ in range(rng.randint(1, 3))]
        return f"{layer['type']}.repeat = {layer['repeat']}"
    blocks = spec.get("blocks") or {}
    if blocks:
        block = rng.choice(sorted(blocks))
        layer["type"] = block
        layer[rng.choice(["planes", "stride", "width", "out", "x"])] = rng.choice([1, 2, 64, True, "${2 * 2}"])
        return f"layer -> block {block} with arguments"
    layer["planes"] = 3
    return f"{layer['type']}.planes = 3"


def mutate_once(spec: dict, rng: random.Random) -> str:
    layers, what = _layers(spec), rng.choice(["number", "number", "drop", "rename", "type", "dtype",
                                              "shape", "insert", "odd", "name", "new_keys"])
    if what == "new_keys":
        return _new_keys(spec, layers, rng)
    if what == "name":
        names = [n for m in _input_maps(spec) for n in m] + [x["name"] for x in layers if isinstance(x.get("name"), str)]
        if names:
            old, new = rng.choice(names), rng.choice(NAMES)
            _rename(spec, old, new)
            return f"rename {old} -> {new}"
    if what == "number":
        paths = list(_numbers(spec))
        if paths:
            path = rng.choice(paths)
            old = _get(spec, path)
            new = rng.choice([0, 1, 2, 3, -1, old + 1, old - 1, old * 2, old // 2 if isinstance(old, int) else old / 2])
            _set(spec, path, new)
            return f"{'.'.join(map(str, path))}: {old} -> {new}"
    if what in ("drop", "rename", "odd"):
        layer = rng.choice(layers)
        keys = [k for k in layer if k not in ("type", "name", "in")]
        if keys:
            key = rng.choice(keys)
            if what == "drop":
                del layer[key]
                return f"drop {layer['type']}.{key}"
            if what == "odd":
                layer[key] = rng.choice(ODD)
                return f"{layer['type']}.{key} = {layer[key]!r}"
            entry = registry.lookup(layer["type"])
            others = [a for a in (entry.args if entry else {}) if a not in layer] or [key + "s"]
            new = rng.choice(others)
            layer[new] = layer.pop(key)
            return f"rename {layer['type']}.{key} -> {new}"
    if what == "type":
        layer = rng.choice(layers)
        old, layer["type"] = layer["type"], rng.choice(TYPES)
        return f"type {old} -> {layer['type']}"
    if what in ("dtype", "shape"):
        maps = _input_maps(spec)
        if maps:
            inputs = rng.choice(maps)
            name = rng.choice(list(inputs))
            entry = inputs[name]
            entry = dict(entry) if isinstance(entry, dict) else {"shape": entry}
            if what == "dtype":
                entry["dtype"] = rng.choice(list(DTYPES))
            else:
                shape = list(entry["shape"])
                op = rng.choice(["drop", "add", "change"])
                if op == "drop" and shape:
                    shape.pop(rng.randrange(len(shape)))
                elif op == "add":
                    shape.insert(rng.randint(0, len(shape)), rng.choice([1, 2, 3]))
                elif shape:
                    shape[rng.randrange(len(shape))] = rng.choice([1, 2, 3, 5, 8])
                entry["shape"] = shape
            inputs[name] = entry
            return f"input {name} -> {entry}"
    # insert a random layer after a random top-level one
    graphs = [spec] if isinstance(spec.get("layers"), list) else [
        n for n in (spec.get("networks") or {}).values() if isinstance(n.get("layers"), list)]
    graph = rng.choice(graphs)
    type_name = rng.choice(TYPES)
    at = rng.randint(0, len(graph["layers"]))
    graph["layers"].insert(at, {"type": type_name, **layer_args(type_name, rng)})
    return f"insert {type_name} at {at}"


def _rename(x, old, new):
    """Rename a node or input everywhere: its name, the inputs' keys, every reference."""
    items = x.items() if isinstance(x, dict) else enumerate(x) if isinstance(x, list) else ()
    for k, v in list(items):
        if v == old and isinstance(v, str):
            x[k] = new
        else:
            _rename(v, old, new)
    if isinstance(x, dict) and old in x and isinstance(x.get(old), (list, dict)) and "inputs" not in x:
        x[new] = x.pop(old)


def mutation(seed: int, i: int) -> tuple[dict, list[str]]:
    rng = random.Random(f"{seed}-mutation-{i}")
    name = sorted(SHIPPED)[i % len(SHIPPED)]
    spec = copy.deepcopy(SHIPPED[name])
    if "image_size" in (spec.get("params") or {}):
        spec["params"]["image_size"] = 32        # the ImageNet architectures, at a size a test can run
    edits = [mutate_once(spec, rng) for _ in range(rng.choice([1, 1, 2, 3]))]
    return spec, [name] + edits


def cases(seed: int, singles: int, mutations: int):
    """(case id, spec, what it is) for `singles` single-layer specs and `mutations` mutations."""
    for i in range(singles):
        spec = single_layer(seed, i)
        yield f"single-{i:05d}", spec, spec["layers"][-1]["type"]
    for i in range(mutations):
        spec, edits = mutation(seed, i)
        yield f"mutation-{i:05d}", spec, "; ".join(edits)


def case(seed: int, case_id: str) -> dict:
    """The spec of one case by its id: "single-00042" or "mutation-00007"."""
    kind, number = case_id.split("-")
    return single_layer(seed, int(number)) if kind == "single" else mutation(seed, int(number))[0]


# --- running ------------------------------------------------------------------------------------

@dataclass
class Outcome:
    kind: str               # "refused", "ran", "skipped" (too large to run here), or a failure:
    #                         "validate crashed", "build failed", "forward failed", "shape", "dtype"
    detail: str = ""
    networks: list = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.kind not in ("refused", "ran", "skipped")


def run(spec: dict) -> Outcome:
    import torch
    from specbuild.compiler.compile import build_model
    from specbuild.spec.infer import total_params
    from specbuild.spec.validate import check

    try:
        checked = check(copy.deepcopy(spec))
    except SpecError as e:
        return Outcome("refused", e.problems[0].message)
    except Exception as e:   # any other exception is a bug of validation
        return Outcome("validate crashed", _error(e))
    for name, graph in checked.graphs.networks.items():
        shapes = checked.shapes[name]
        sizes = [_elements(i.shape) for i in graph.inputs.values()]
        if total_params(shapes) > MAX_PARAMS or sum(sizes) > MAX_ELEMENTS:
            return Outcome("skipped", f"{name}: {total_params(shapes):,} parameters")
        try:
            model = build_model(checked, network=name)
        except Exception as e:
            return Outcome("build failed", _error(e))
        bound = _index_bound(checked)
        xs = [_input(i, bound) for i in graph.inputs.values()]
        expected = _expected(graph, shapes)
        for mode in ("train", "eval"):           # training, then evaluate and predict
            model.train(mode == "train")
            try:
                with torch.no_grad():
                    out = model(*xs)
            except Exception as e:
                return Outcome("forward failed", f"{_error(e)} ({mode} mode)")
            diff = _compare(out, expected)
            if diff:
                return Outcome(diff[0], f"{diff[1]} ({mode} mode)")
    return Outcome("ran")


def _error(e: BaseException) -> str:
    where = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
    at = f" [{Path(where.filename).name}:{where.lineno}]" if where else ""
    return f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}{at}"


def _elements(shape) -> int:
    n = BATCH
    for d in shape or ():
        n *= d
    return n


# types that never change integer values (they move, pick, copy or pad with zeros)
_KEEP_VALUES = {"reshape", "view", "flatten", "permute", "transpose", "unsqueeze", "squeeze", "slice", "item",
                "chunk", "cat", "stack", "amax", "amin", "relu", "abs", "Identity", "Flatten", "Unflatten", "ReLU",
                "ZeroPad1d", "ZeroPad2d", "ZeroPad3d", "Embedding", "EmbeddingBag"}


def _index_bound(checked) -> int:
    """Integer inputs are drawn from [0, bound): below every num_embeddings in the spec; 1 (zeros)
    where values mean positions (MaxUnpool's indices, EmbeddingBag's offsets) or where a layer before
    an Embedding may change them (a sum of ids: zeros stay zeros)."""
    sizes = [layer["num_embeddings"] for layer in _layers(checked.data)
             if layer["type"] in ("Embedding", "EmbeddingBag") and isinstance(layer.get("num_embeddings"), int)]
    bound = min(sizes, default=10)
    for layer in _layers(checked.data):
        if layer["type"].startswith("MaxUnpool") or layer["type"] == "EmbeddingBag":
            bound = 1
    for graph in list(checked.graphs.networks.values()) + list(checked.graphs.blocks.values()):
        for node in graph.nodes.values():
            inner = {x["type"] for x in _layers(node.args)} | {node.type}
            if inner & {"Embedding", "EmbeddingBag"} and (inner - _KEEP_VALUES or any(
                    graph.nodes[n].type not in _KEEP_VALUES for n in _upstream(graph, node))):
                bound = 1
    return max(bound, 1)


def _upstream(graph, node) -> set:
    seen, todo = set(), list(node.inputs)
    while todo:
        name = todo.pop()
        if name in graph.nodes and name not in seen:
            seen.add(name)
            todo.extend(graph.nodes[name].inputs)
    return seen


def _input(spec_input, bound):
    import torch
    size = (BATCH,) + tuple(spec_input.shape or ())
    dtype = spec_input.torch_dtype()
    if dtype.is_floating_point:
        return torch.randn(size).to(dtype)
    if dtype == torch.bool:
        return torch.rand(size) < 0.5
    return torch.randint(0, bound, size, dtype=dtype)


def _expected(graph, shapes):
    def one(name):
        if name in shapes:
            return shapes[name].output, shapes[name].dtype
        spec_input = graph.inputs[name]
        return ("N",) + tuple(spec_input.shape or ()), spec_input.dtype_name
    if isinstance(graph.outputs, dict):
        return {k: one(v) for k, v in graph.outputs.items()}
    if isinstance(graph.outputs, list):
        return [one(v) for v in graph.outputs]
    return one(graph.outputs)


def _compare(out, expected, where="output"):
    """None, or (kind, what differs) for the first difference."""
    import torch
    if isinstance(expected, dict):
        for k, v in expected.items():
            diff = _compare(out[k], v, f"{where}[{k!r}]")
            if diff:
                return diff
        return None
    if isinstance(expected, list):       # several outputs
        for k, (o, v) in enumerate(zip(out, expected)):
            diff = _compare(o, v, f"{where}[{k}]")
            if diff:
                return diff
        return None
    shape, dtype = expected
    return _compare_value(out, shape, dtype, where, torch)


def _compare_value(out, shape, dtype, where, torch):
    if isinstance(shape, list):          # a multi-value
        if not isinstance(out, (tuple, list)) or len(out) != len(shape):
            return "shape", f"{where}: inferred the multi-value {shape}, torch gives {_shape_of(out)}"
        dtypes = dtype if isinstance(dtype, list) else [dtype] * len(shape)
        for k, (o, s, d) in enumerate(zip(out, shape, dtypes)):
            diff = _compare_value(o, s, d, f"{where}[{k}]", torch)
            if diff:
                return diff
        return None
    if not isinstance(out, torch.Tensor):
        return "shape", f"{where}: inferred {list(shape)}, torch gives {_shape_of(out)}"
    want = tuple(BATCH if d == "N" else d for d in shape)
    if len(want) != out.dim() or any(w is not None and w != g for w, g in zip(want, out.shape)):
        return "shape", f"{where}: inferred {list(shape)} (N={BATCH}), torch gives {list(out.shape)}"
    got = str(out.dtype).removeprefix("torch.")
    if got != dtype:
        return "dtype", f"{where}: inferred {dtype}, torch gives {got}"
    return None


def _shape_of(out):
    import torch
    if isinstance(out, torch.Tensor):
        return list(out.shape)
    if isinstance(out, (tuple, list)):
        return [_shape_of(o) for o in out]
    return repr(out)
