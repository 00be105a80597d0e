"""torch's refusal to export a model, told as the spec's node that failed and why, in one line.

torch reports an export failure deep in its own machinery: a data-dependent guard, an aten op
without an ONNX translation, a tracer that cannot follow a forward.  Which node of the spec it
was is found, in this order, from:

  - the frames of the model's generated forward (one per GraphModule: the spec's graph and each
    block's) in the tracebacks, or named in the messages (`File "<eval_with_key>.3", line 7`):
    each line of the generated code assigns one node, `fc1 = self.fc1(relu)`;
  - the fx node torch names (`While executing %gate`, torch.export's interpreter) and, for an
    exported program's node (`Error when translating node %adaptive_max_pool2d`, the ONNX
    converter), the module it came from (its `nn_module_stack`) or its stack trace;
  - the submodules running when it failed (`watching`: forward hooks, used when tracing);
  - where torch says only that the batch size got fixed: the first node whose output does not
    follow the batch when the model runs at another batch size (`fixed_batch_node`).

The node's qualified name is its place among the weights (`layer1.0.conv2`); the spec's node is
the first part of it.  `quiet()` keeps torch's own printing (partial graphs on stderr, warnings)
off the user's terminal.
"""
from __future__ import annotations

import contextlib
import io
import re
import traceback
import warnings

import torch
from torch import fx

from ..errors import Problem, SpecError
from ..spec.infer import BATCH
from ..spec.source_map import format_path

_AT_LINE = re.compile(r'File "([^"]+)", line (\d+)')
_EXECUTING = re.compile(r"While executing %(\w+)")
_TRANSLATING = re.compile(r"Error when translating node %(\w+)")
_NO_ONNX = re.compile(r"No ONNX function found for <OpOverload\(op='([\w.]+)'")
_ASSIGNS = re.compile(r"^\s*(\w+)\s*=")
MAX_REASON = 200
FIXED_BATCH = "the batch dimension cannot vary: the model fixes the batch size"


@contextlib.contextmanager
def quiet():
    """torch's prints (stdout, stderr) and warnings while exporting go nowhere."""
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        yield sink


class Watch:
    """The submodules running (a stack of qualified names) and the tracer's warnings, with the
    submodule that was running when each was given."""

    def __init__(self):
        self.stack: list[str] = []
        self.warned: list[tuple[str | None, str, str]] = []   # (submodule, category, message)

    @property
    def active(self) -> str | None:
        return self.stack[-1] if self.stack else None


@contextlib.contextmanager
def watching(model: torch.nn.Module):
    """quiet(), with forward hooks on every submodule: on a failure, Watch.active is the innermost
    submodule that was running; each warning is kept with the submodule that gave it."""
    watch = Watch()
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue
        handles.append(module.register_forward_pre_hook(lambda m, a, name=name: watch.stack.append(name)))
        handles.append(module.register_forward_hook(lambda m, a, out: watch.stack.pop() and None))

    def show(message, category, *args, **kwargs):
        watch.warned.append((watch.active, category.__name__, str(message)))
    try:
        with quiet():
            warnings.simplefilter("always")
            warnings.showwarning = show
            yield watch
    finally:
        for handle in handles:
            handle.remove()


def export_error(error: BaseException, source, to: str, watch: Watch | None = None, program=None,
                 inputs: tuple | None = None) -> SpecError:
    """The SpecError for torch's `error` exporting `source` (formats.Source) to `to`; `inputs`, the
    example inputs, find the node that fixes the batch size when torch says only that one does."""
    chain = list(_chain(error))
    why, hint = reason(chain, to)
    where = locate(chain, source.model, program) or (watch.active if watch is not None else None)
    if where is None and why == FIXED_BATCH and inputs is not None:
        where = fixed_batch_node(source, inputs)
    return _problem(source, to, where, why, hint)


def fixed_batch_node(source, inputs: tuple) -> str | None:
    """The first node that, run at another batch size, fails or keeps the example's batch size where
    shape inference says the batch dimension goes through (a reshape to a fixed size in a forward)."""
    graph, shapes, seen = source.graph, source.checked.shapes[source.network], {}
    handles = [module.register_forward_hook(lambda m, a, out, name=name: seen.setdefault(name, out))
               for name, module in source.model.named_children()]
    try:
        with torch.no_grad(), watching(source.model) as watch:
            source.model(*[torch.cat([x, x[:1]]) for x in inputs])
    except Exception:               # it fails at another batch size: in the node that was running
        return watch.active.split(".", 1)[0] if watch.active else None
    finally:
        for handle in handles:
            handle.remove()
    batch = len(inputs[0]) + 1 if inputs else None
    for name in graph.order:
        out = torch.utils._pytree.tree_leaves(seen.get(name))
        inferred = shapes[name].output if name in shapes else ()
        if out and inferred and inferred[0] == BATCH and isinstance(out[0], torch.Tensor) and out[0].dim() \
                and len(out[0]) != batch:
            return name
    return None


def branches_on_values(watch: Watch) -> str | None:
    """The submodule whose forward the tracer saw turning a tensor into a Python bool (an `if` on
    tensor values: the trace keeps one branch), or "" for one outside any submodule; None if none."""
    return next(((name or "") for name, category, message in watch.warned
                 if category == "TracerWarning" and "Python boolean" in message), None)


def traced_wrong(source, watch: Watch, where: str | None = None) -> SpecError:
    """A trace that recorded one path through a forward that takes another for other inputs."""
    if where is not None:
        return _problem(source, "torchscript", where or None,
                        "TorchScript cannot compile its forward, and a trace would keep one branch of its `if` on "
                        "tensor values", "write the forward so that torch.jit.script compiles it (its `if` is then "
                        "kept), or use torch.where instead of an `if` on tensor values")
    where = next((name for name, category, _ in watch.warned if name and category == "TracerWarning"), None)
    return _problem(source, "torchscript", where,
                    "TorchScript cannot compile its forward, and its trace gives other outputs than the model at "
                    "another batch size: the forward depends on the size or values of its inputs",
                    "export to pt2 or onnx instead, or write the forward so that torch.jit.script compiles it")


def _problem(source, to: str, where: str | None, why: str, hint: str) -> SpecError:
    checked = source.checked
    graph = checked.graphs.networks[source.network]
    top = where.split(".", 1)[0] if where else None
    node = graph.nodes.get(top) if top else None
    message = f"cannot export to {to}: "
    if node is not None and where != top:
        message += f"{where} (inside {top}): "
    if node is None:
        return SpecError([Problem(message + why, file=checked.spec.file, path=_network_path(graph), hint=hint)])
    return SpecError([checked.spec.problem(message + why, path=node.path, node=node.name, hint=hint)])


def _network_path(graph) -> str:
    return format_path(graph.path) or "layers"


def _chain(error: BaseException):
    """The exception and those it was raised from, outermost first."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _generated(model: torch.nn.Module) -> dict[str, tuple[str, list[str]]]:
    """The file name of each GraphModule's generated forward -> (its qualified name, its lines)."""
    found = {}
    for name, module in model.named_modules():
        if isinstance(module, fx.GraphModule):
            code = getattr(type(module).forward, "__code__", None)
            if code is not None:
                found[code.co_filename] = (name, module.code.splitlines())
    return found


def _node_at(generated: dict, file: str, line: int) -> str | None:
    """The qualified name of the node the generated code's `line` assigns."""
    if file not in generated:
        return None
    prefix, lines = generated[file]
    match = _ASSIGNS.match(lines[line - 1]) if 0 < line <= len(lines) else None
    if match is None:
        return None
    return f"{prefix}.{match.group(1)}" if prefix else match.group(1)


def locate(chain: list, model: torch.nn.Module, program=None) -> str | None:
    """The qualified name of the node the failure happened in, or None when it cannot be told."""
    generated = _generated(model)
    hits = []
    for error in chain:
        for frame, line in traceback.walk_tb(error.__traceback__):
            hits.append(_node_at(generated, frame.f_code.co_filename, line))
    texts = [str(error) for error in chain]
    for text in texts:
        hits += [_node_at(generated, file, int(line)) for file, line in _AT_LINE.findall(text)]
    hits = [hit for hit in hits if hit]
    if hits:
        return max(hits, key=lambda hit: hit.count("."))    # the innermost: a block's node, not the block
    for text in texts:
        named = _TRANSLATING.findall(text)
        if named and program is not None:
            found = _program_node(program, named[-1], generated)
            if found:
                return found
    names = [name for text in texts for name in _EXECUTING.findall(text)]
    modules = dict(model.named_modules())
    for name in reversed(names):
        if name in modules or any(n.name == name for n in getattr(model, "graph", fx.Graph()).nodes):
            return name
    return None


def _program_node(program, name: str, generated: dict) -> str | None:
    """Where an exported program's node came from: its stack trace's line of generated code, or
    the innermost module on its nn_module_stack."""
    node = next((n for n in program.graph.nodes if n.name == name), None)
    if node is None:
        return None
    hits = [_node_at(generated, file, int(line)) for file, line in _AT_LINE.findall(node.meta.get("stack_trace") or "")]
    hits = [hit for hit in hits if hit]
    if hits:
        return hits[-1]
    stack = node.meta.get("nn_module_stack") or {}
    paths = [value[0] for value in stack.values() if isinstance(value, tuple) and value and value[0]]
    return paths[-1] if paths else None


def reason(chain: list, to: str) -> tuple[str, str]:
    """(why, what to do), in plain words where the failure is a known kind, else torch's first line."""
    text = "\n".join(f"{type(error).__name__}: {error}" for error in chain)
    missing = _NO_ONNX.search(text)
    if missing:
        return (f"torch's {missing.group(1)} has no ONNX translation",
                "export to pt2 or torchscript instead, or use another layer type for this node")
    if "data-dependent" in text or "GuardOnDataDependent" in text:
        return ("its forward branches on the values in a tensor (data-dependent control flow), which torch.export "
                "cannot capture: only shapes may steer a forward",
                "export to torchscript instead (it compiles Python control flow), or use torch.where or torch.cond "
                "in the forward instead of an `if` on tensor values")
    if "Constraints violated" in text or "ConstraintViolation" in text:
        return (FIXED_BATCH,
                "keep the batch dimension free in the node's forward: reshape with -1 or x.shape[0], not a fixed "
                "size")
    innermost = chain[-1]
    first = next((line.strip() for line in str(innermost).splitlines() if line.strip()), type(innermost).__name__)
    first = re.sub(r"\x1b\[[0-9;]*m", "", first)
    first = first if len(first) <= MAX_REASON else first[:MAX_REASON - 3] + "..."
    others = ", ".join(name for name in ("pt2", "onnx", "torchscript") if name != to)
    return (f"torch says: {first}", f"another format may take the model ({others}); SPECBUILD_DEBUG=1 shows "
                                    "torch's whole error")
