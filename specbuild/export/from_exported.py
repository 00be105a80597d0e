"""An ExportedProgram (torch.export.save's .pt2) as a spec: `spec_from_exported(program_or_path)`.

torch.export.unflatten gives the program back as the original module hierarchy: one
InterpreterModule per submodule, whose graph is ATen operators with the submodule's own
parameters as get_attr.  Each is read as export/trace.py reads a traced forward: a torch.nn
layer (its graph one operator on its parameters, export/aten_ops.py) becomes that layer, a
Sequential a Sequential, any other child a block; the class names come from the program's
`nn_module_stack`, so the uses of one class merge into one definition (export/merge.py).
Submodule names are kept, so the program's state_dict loads into the rebuilt model strictly.
"""
from __future__ import annotations

import logging
import operator
import os
import zipfile

import torch
from torch.utils import _pytree

from .. import registry
from ..errors import SpecError
from .aten_ops import (FUNCTION_OPS, IDENTITY_OPS, IGNORED_OPS, LAYER_OPS, MULTI_OUTPUT_OPS, RESHAPES, Param,
                       arguments, function_entry, op_name, op_text, without_defaults)
from .from_module import chain_by_default, identifier, input_entry
from .merge import BlockUse, merge_blocks

_SEQUENTIAL = "torch.nn.modules.container.Sequential"
_HINT = "see `specbuild list functions` for what a spec may call; or import the module itself (MODULE.py:Class)"


def load_program(source):
    """An ExportedProgram as given, or read from a .pt2 path."""
    if isinstance(source, torch.export.ExportedProgram):
        return source
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise SpecError(f"{path}: no such file", hint="give the path of a file written by torch.export.save")
    hint = "write it with torch.export.save(torch.export.export(module, inputs), path)"
    if not zipfile.is_zipfile(path):
        raise SpecError(f"{path} cannot be read as an ExportedProgram: it is no .pt2 archive", hint=hint)
    log = logging.getLogger("torch.export")
    level = log.level
    log.setLevel(logging.CRITICAL)        # torch logs its own traceback before raising; the message says enough
    try:
        return torch.export.load(path)
    except Exception as error:           # torch raises many kinds for a file that is no program
        text = str(error).replace(" Please check the warnings above for possible errors.", "").strip()
        raise SpecError(f"{path} cannot be read as an ExportedProgram: {type(error).__name__}: {text}",
                        hint=hint) from None
    finally:
        log.setLevel(level)


def spec_from_exported(program, *, name: str | None = None, doc: str | None = None) -> dict:
    """The spec (plain data, ready for YAML) of an ExportedProgram, or of a .pt2 file's."""
    ep = load_program(program)
    classes = _classes(ep)
    try:
        root = torch.export.unflatten(ep)
    except Exception as error:           # unflatten's own refusals (a module called with changing arguments...)
        raise SpecError(f"the program cannot be split back into its modules: {type(error).__name__}: {error}",
                        hint="import the module itself (MODULE.py:Class)") from None
    importer = _Importer(classes, _batch(ep))
    body = _Body(importer, root, "", root=True).read()
    inputs = _inputs(ep, body["inputs"])
    blocks, layers = merge_blocks(importer.uses, body["layers"])
    cls = classes.get("", "").rsplit(".", 1)[-1]
    default = cls.lower() if cls and "<" not in classes[""] else "exported"      # build_model's class is local
    spec = {"specbuild": 1, "name": identifier(name or default)}
    if doc:
        spec["doc"] = doc
    spec["inputs"] = inputs
    if blocks:
        spec["blocks"] = blocks
    if not layers:
        raise SpecError("the program computes nothing a spec can hold (no operators)")
    unnamed = [layer["name"] for layer in layers if not layer["name"].isidentifier()]
    if unnamed:
        raise SpecError(f"the program's top-level modules are named {', '.join(unnamed)}: no spec layer names "
                        "(a Sequential's children are 0, 1, ...)", hint="export a module that holds the "
                        "Sequential as an attribute (self.net = nn.Sequential(...))")
    spec["layers"] = chain_by_default(layers, list(inputs))
    outputs = _pytree.tree_unflatten(list(body["outputs"]), ep.call_spec.out_spec)
    outputs = list(outputs) if isinstance(outputs, (tuple, list)) else outputs
    if outputs != layers[-1]["name"]:
        spec["outputs"] = outputs
    return spec


def _classes(ep) -> dict:
    """Module path -> its class's qualified name, from each node's nn_module_stack."""
    out = {}
    for node in ep.graph_module.graph.nodes:
        for path, cls in (node.meta.get("nn_module_stack") or {}).values():
            out.setdefault(path, cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}")
    return out


def _user_inputs(ep) -> list:
    names = set(ep.graph_signature.user_inputs)
    return [n for n in ep.graph_module.graph.nodes if n.op == "placeholder" and n.name in names]


def _batch(ep):
    """The example batch size (views written with it get -1 there), None where it is symbolic."""
    for node in _user_inputs(ep):
        value = node.meta.get("val")
        if isinstance(value, torch.Tensor) and value.dim() and isinstance(value.shape[0], int):
            return value.shape[0]
    return None


def _inputs(ep, names: list) -> dict:
    nodes = _user_inputs(ep)
    if len(nodes) != len(names):
        raise SpecError(f"the program takes {len(nodes)} tensors, and {len(names)} inputs were found",
                        hint="export a module whose forward takes tensors only")
    out = {}
    for input_name, node in zip(names, nodes):
        value = node.meta.get("val")
        if not isinstance(value, torch.Tensor) or not value.dim():
            raise SpecError(f"input {input_name} is no tensor with a batch dim", hint="a spec's inputs are batches")
        out[input_name] = input_entry(value)
    return out


class _Importer:
    def __init__(self, classes: dict, batch):
        self.classes, self.batch = classes, batch
        self.uses: list[BlockUse] = []       # every block use, inner ones before the blocks holding them

    def child(self, module, path: str) -> dict:
        cls = self.classes.get(path, "")
        children = [name for name, _ in module.named_children()]
        if cls == _SEQUENTIAL or children and all(name.isdigit() for name in children):
            return self.sequence(module, path)        # also a subclass (torchvision's Conv2dNormActivation)
        if cls.startswith("torch.nn.") and not any(True for _ in module.named_children()):
            return self.torch_layer(module, path, cls)
        body = _Body(self, module, path).read()
        use = BlockUse(len(self.uses), identifier(cls.rsplit(".", 1)[-1] or "Block"), body)
        self.uses.append(use)
        entry = {"type": use}
        if isinstance(body["outputs"], (list, dict)):
            entry["__multi__"] = True
        return entry

    def torch_layer(self, module, path: str, cls: str) -> dict:
        """A torch.nn layer's graph, one operator, as that layer (named by its path in the parent)."""
        body = _Body(self, module, path, leaf=True).read()
        layers = body["layers"]
        if not layers and body["outputs"] == body["inputs"][0]:
            return {"type": "Identity"}
        if len(layers) == 1 and body["outputs"] == layers[0]["name"]:
            entry = {k: v for k, v in layers[0].items() if k not in ("name", "in")}
            return _as_class(entry, cls.rsplit(".", 1)[-1])
        kinds = ", ".join(str(layer.get("type")) for layer in layers)
        raise SpecError(f"{path} ({cls.rsplit('.', 1)[-1]}) is {len(layers)} operators in the program ({kinds}), "
                        "not one", hint="only torch.nn layers exported as one ATen operator are read back; "
                        "import the module itself (MODULE.py:Class)")

    def sequence(self, module, path: str) -> dict:
        """A Sequential's chain of children; a child the program dropped (Identity) written back as one."""
        entries: dict[int, dict] = {}
        previous = None
        for node in module.graph.nodes:
            chained = node.op == "call_module" and list(node.args) == [previous] and not node.kwargs
            if node.op == "call_module" and chained and str(node.target).isdigit() and int(node.target) not in entries:
                entries[int(node.target)] = self.child(module.get_submodule(node.target), f"{path}.{node.target}")
            elif node.op not in ("placeholder", "output") or (node.op == "output"
                                                               and _single(node.args[0]) is not previous):
                raise SpecError(f"{path} (Sequential) is no plain chain of its children in the program",
                                hint="import the module itself (MODULE.py:Class)")
            previous = node
        return {"type": "Sequential", "layers": [entries.get(i, {"type": "Identity"}) for i in range(max(entries) + 1)]}


def _as_class(entry: dict, cls: str) -> dict:
    """nn.ReLU read as `relu` written back as ReLU (a layer may be shared, or sit in a Sequential)."""
    layer_type = registry.BUILTIN_TYPES.get(cls)
    function = registry.BUILTIN_TYPES[entry["type"]]
    if function.kind != "function" or layer_type is None or layer_type.kind != "module":
        return entry
    args = {k: v for k, v in entry.items() if k != "type"}
    if cls.lower() != entry["type"] or any(k not in layer_type.args for k in args):
        return entry
    full = {k: about["default"] for k, about in function.args.items() if "default" in about}
    return {"type": cls, **without_defaults(cls, {**full, **args})}


def _single(value):
    return value[0] if isinstance(value, (tuple, list)) and len(value) == 1 else value


class _First:
    """An operator with several outputs of which a spec's layer gives the first (batch norm's)."""

    def __init__(self, name: str):
        self.name = name


_BATCH = object()          # aten.sym_size(x, 0): the batch size, written -1 in a view


class _Body:
    """The spec layers of one InterpreterModule's graph ({"inputs", "layers", "outputs"})."""

    def __init__(self, importer: _Importer, module, where: str, root: bool = False, leaf: bool = False):
        self.importer, self.module, self.where, self.root, self.leaf = importer, module, where, root, leaf
        self.values: dict = {}
        self.layers: list[dict] = []
        self.inputs: list[str] = []
        self.multi: set[str] = set()
        self.called: dict[str, str] = {}
        self.taken = {child for child, _ in module.named_children()}

    def read(self) -> dict:
        placeholders = [n for n in self.module.graph.nodes if n.op == "placeholder"]
        names = ([str(n.target) for n in placeholders] if self.root else
                 ["x"] if len(placeholders) == 1 else [f"x{i + 1}" for i in range(len(placeholders))])
        for node, input_name in zip(placeholders, names):
            self.inputs.append(input_name)
            self.values[node] = input_name
            self.taken.add(input_name)
        for node in self.module.graph.nodes:
            if node.op != "placeholder":
                getattr(self, "_" + node.op)(node)
        return {"inputs": self.inputs, "layers": self.layers, "outputs": self.outputs}

    def _where(self, node=None) -> str:
        return f"{self.where}: " if self.where else ""

    def _get_attr(self, node):
        value = self.module
        for part in str(node.target).split("."):
            value = getattr(value, part)
        self.values[node] = Param(str(node.target), value)

    def _call_module(self, node):
        target = str(node.target)
        ins = [self._name(a) for a in node.args if hasattr(a, "op")]
        if node.kwargs:
            raise SpecError(f"{self._where(node)}{target} is called with keyword arguments, which a spec cannot pass")
        if target in self.called:
            self._add(node, {"share": self.called[target]}, ins, self._fresh(target))
            return
        path = f"{self.where}.{target}" if self.where else target
        entry = self.importer.child(self.module.get_submodule(target), path)
        self.called[target] = target
        if entry.pop("__multi__", False):
            self.multi.add(target)
        self._add(node, entry, ins, target)

    def _call_function(self, node):
        if node.target is operator.getitem:
            self._getitem(node)
            return
        op = op_name(node.target)
        if op in IGNORED_OPS:
            return
        if op in IDENTITY_OPS:
            self.values[node] = self.values[node.args[0]]
            return
        if op == "sym_size" and node.args[1] == 0:
            self.values[node] = _BATCH
            return
        params = [self.values[a] for a in _nodes(node.args, node.kwargs) if isinstance(self.values.get(a), Param)]
        if op in LAYER_OPS and self.leaf and params:
            a = {k: self._param_or(v) for k, v in arguments(node).items()}
            spec_type, args, data = LAYER_OPS[op](node, a)
            self._add(node, {"type": spec_type, **without_defaults(spec_type, args)}, [self._name(data)],
                      self._fresh(op))
            if op in MULTI_OUTPUT_OPS:
                self.values[node] = _First(self.layers[-1]["name"])
            return
        if params and self.leaf:
            raise SpecError(f"{self._where(node)}{op_text(node.target)} (node {node.name}) on the layer's parameters "
                            "has no spec counterpart", hint="layers are read back from torch.export.export's own "
                            "operators (aten.conv2d, aten.linear...), not from a program after run_decompositions()")
        if params:
            raise SpecError(f"{self._where(node)}{op_text(node.target)} (node {node.name}) reads "
                            f"`self.{params[0].name}` directly",
                            hint="a spec's weights live in layers: wrap the parameter in a module")
        if op in RESHAPES:
            a = arguments(node)
            shape = [self._size(v, i) for i, v in enumerate(a.get("size", a.get("shape")))]
            self._add(node, {"type": RESHAPES[op], "shape": shape}, [self._name(a["self"])], self._fresh(RESHAPES[op]))
            return
        if op not in FUNCTION_OPS:
            raise SpecError(f"{self._where(node)}{op_text(node.target)} (node {node.name}) has no spec counterpart",
                            hint=_HINT)
        spec_type, args, ins = function_entry(node)
        kind = registry.BUILTIN_TYPES[spec_type].kind
        self._add(node, {"type": spec_type, **args}, [self._name(i) for i in ins],
                  self._fresh(spec_type if kind == "function" else op.removesuffix("_with_indices")))
        if op in MULTI_OUTPUT_OPS:
            self.values[node] = _First(self.layers[-1]["name"])

    def _getitem(self, node):
        source, index = self.values.get(node.args[0]), node.args[1]
        if isinstance(source, _First) and index == 0:
            self.values[node] = source.name
        elif isinstance(source, str) and source in self.multi and isinstance(index, int):
            self._add(node, {"type": "item", "index": index}, [source], self._fresh("item"))
        elif isinstance(source, _First):     # batch norm's saved statistics, max_pool's indices: nothing a spec gives
            raise SpecError(f"{self._where(node)}output {index} of node {node.args[0].name} has no spec counterpart")
        else:
            raise SpecError(f"{self._where(node)}indexing node {node.args[0].name} (node {node.name}) has no spec "
                            "counterpart", hint=_HINT)

    def _output(self, node):
        result = node.args[0]
        if isinstance(result, (tuple, list)) and (self.root or len(result) != 1):
            self.outputs = [self._name(v) for v in result]
        else:
            self.outputs = self._name(_single(result))

    # -- helpers -------------------------------------------------------------------------------
    def _size(self, value, position: int):
        if value is _BATCH or (hasattr(value, "op") and self.values.get(value) is _BATCH):
            return -1
        if hasattr(value, "op"):
            raise SpecError(f"{self._where(value)}a size computed in the program ({value.name}) cannot be written "
                            "in a spec", hint="export with fixed sizes; the batch is written -1")
        return -1 if position == 0 and value == self.importer.batch else int(value)

    def _param_or(self, value):
        return self.values[value] if hasattr(value, "op") and isinstance(self.values.get(value), Param) else value

    def _name(self, node) -> str:
        value = self.values.get(node)
        if isinstance(value, str):
            return value
        raise SpecError(f"{self._where(node)}node {getattr(node, 'name', node)} is no value a spec layer can read",
                        hint=_HINT)

    def _fresh(self, base: str) -> str:
        name, n = base, 1
        while name in self.taken:
            name, n = f"{base}_{n}", n + 1
        self.taken.add(name)
        return name

    def _add(self, node, entry: dict, ins: list, name: str):
        self.layers.append({"name": name, **entry, "in": ins[0] if len(ins) == 1 else list(ins)})
        self.values[node] = name


def _nodes(args, kwargs) -> list:
    out = []
    for value in [*args, *kwargs.values()]:
        if isinstance(value, (list, tuple)):
            out += [v for v in value if hasattr(v, "op")]
        elif hasattr(value, "op"):
            out.append(value)
    return out
