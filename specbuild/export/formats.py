"""Export a model to a file: a standalone Python file, a torch.export program, ONNX or TorchScript.

`export_model(source, to, out)` takes a spec (a path, YAML/JSON text or a dict) or a checkpoint written
by `specbuild train` (a .pt file: the spec comes from it, and its trained weights go in; a spec
gets freshly initialised weights).  Each format is written from the model `build_model` gives,
in eval mode, with example inputs of the spec's shapes and dtypes at a batch of EXAMPLE_BATCH:

  python       a .py file defining the model as a plain nn.Module (python_code.py)
  pt2          torch.export.export with a dynamic batch dimension, saved by torch.export.save
  onnx         the same torch.export program through torch.onnx's exporter, dynamic batch axis,
               checked by onnx.checker (needs the `export` extra: onnx, onnxscript)
  torchscript  torch.jit.script, or torch.jit.trace where scripting fails; torch.jit.save

A model a format cannot hold is refused with a SpecError naming the spec's node and the reason
in one line (failures.py), never torch's trace.  Files are written whole or not at all (a temp
file beside the target, then renamed over it).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..compiler.compile import build_model, pick_network
from ..compiler.weights import checkpoint_state_dict, fit_weights, read_checkpoint
from ..atomic import replace_atomically
from ..errors import SpecError, did_you_mean
from ..spec.graph import Graph
from ..spec.validate import Checked, check
from .failures import branches_on_values, export_error, quiet, traced_wrong, watching

# format -> (file suffix, what it is, in a few words)
FORMATS = {"python": (".py", "a standalone Python file defining the model"),
           "pt2": (".pt2", "a torch.export program, for torch.export.load"),
           "onnx": (".onnx", "an ONNX model, for onnxruntime and other ONNX runtimes"),
           "torchscript": (".pt", "a TorchScript module, for torch.jit.load")}
# torch.export specializes a dimension whose example size is 0 or 1: the example batch is 2, and
# the exported batch dimension takes any size from 1 up
EXAMPLE_BATCH = 2
CHECK_BATCH = 3          # a traced module is compared with the model at another batch size
FRESH = "weights: freshly initialised (a spec, not a checkpoint)"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
EXTRA_HINT = "install the export extra: pip install 'specbuild[export]' (onnx, onnxscript, onnxruntime)"


@dataclass
class Source:
    """What goes into an export: the checked spec, the network, and the model with its weights."""
    checked: Checked
    network: str
    model: torch.nn.Module         # in eval mode, holding the weights that are exported
    state: dict | None             # a checkpoint's trained weights; None for a spec (fresh weights)
    file: str | None               # the spec or checkpoint file read, if any
    weights: str                   # one line saying where the weights come from

    @property
    def trained(self) -> bool:
        return self.state is not None

    @property
    def graph(self) -> Graph:
        return self.checked.graphs.networks[self.network]

    @property
    def name(self) -> str:
        """The default file name's stem: the spec's name (and the network's, for one of several)."""
        name = str(self.checked.data.get("name") or "model")
        if len(self.checked.graphs.networks) > 1:
            name += "-" + self.network
        return re.sub(r"[^\w.-]+", "_", name)


def export_model(source, to: str, out=None, *, network: str | None = None, overrides: dict | None = None) -> Path:
    """Write the model of `source` (a spec, or a checkpoint of `specbuild train`) in the format
    `to` (python, pt2, onnx, torchscript) to `out` (default: <spec name>.<suffix> here); its path.
    A checkpoint's trained weights go in; a spec's model has freshly initialised ones."""
    check_format(to)
    return write(load_source(source, network=network, overrides=overrides), to, out)


def check_format(to: str) -> None:
    if to not in FORMATS:
        raise SpecError(f"no export format {to!r}",
                        hint=did_you_mean(to, FORMATS) or "give one of: " + ", ".join(FORMATS))


def load_source(source, *, network: str | None = None, overrides: dict | None = None) -> Source:
    """The checked spec and the model, with a checkpoint's trained weights or fresh ones."""
    path = checkpoint_path(source)
    if path is None:
        checked = check(source, overrides=overrides)
        name = pick_network(checked, network)
        return Source(checked, name, build_model(checked, network=name).eval(), None, checked.spec.file, FRESH)
    data = read_checkpoint(path)
    checked = check(data["spec"], overrides=overrides)
    recorded = data.get("network") if data.get("network") in checked.graphs.networks else None
    name = pick_network(checked, network or recorded)
    model = build_model(checked, network=name)
    state = checkpoint_state_dict(data, path, name)
    fit_weights(model, state, path)
    return Source(checked, name, model.eval(), state, path, f"weights: trained, from the checkpoint {path}")


def checkpoint_path(source) -> str | None:
    """`source` as a checkpoint file's path, or None for a spec: a file named .pt (.pth, .bin,
    .ckpt), or one whose bytes are a torch file's (a zip archive; a pickle before torch 1.6)."""
    if not isinstance(source, (str, os.PathLike)) or isinstance(source, str) and "\n" in source:
        return None
    path = os.fsdecode(os.fspath(source))
    if not os.path.isfile(path):
        return None
    if path.lower().endswith(CHECKPOINT_SUFFIXES):
        return path
    with open(path, "rb") as f:
        head = f.read(2)
    return path if head == b"PK" or head[:1] == b"\x80" else None


def default_path(source: Source, to: str) -> Path:
    return Path(source.name + FORMATS[to][0])


def write(source: Source, to: str, out=None) -> Path:
    """Write `source`'s model as `to` to `out` (default_path when None); the path written."""
    check_format(to)
    path = Path(out) if out is not None else default_path(source, to)
    if path.is_dir():
        raise SpecError(f"cannot write {path}: it is a folder", hint=f"give a file name, e.g. "
                                                                      f"{path / default_path(source, to)}")
    if not path.parent.is_dir():
        raise SpecError(f"cannot write {path}: the folder {path.parent} does not exist",
                        hint="create the folder first, or give another path")
    if source.file is not None and path.exists() and os.path.samefile(path, source.file):
        raise SpecError(f"cannot write {path}: it is the file exported from", hint="give another output file")
    if path.suffix in CHECKPOINT_SUFFIXES and _is_checkpoint(path):     # torchscript's .pt over a run's last.pt
        raise SpecError(f"cannot write {path}: it holds a training checkpoint, which the export would replace",
                        hint="give another output file with -o, or move the checkpoint first")
    _WRITERS[to](source, path)
    return path


def _is_checkpoint(path: Path) -> bool:
    """Whether an existing file is a specbuild checkpoint (spec + weights), read without running it."""
    if not path.is_file():
        return False
    try:
        read_checkpoint(path)
    except SpecError:
        return False
    return True


# --- example inputs --------------------------------------------------------------------------

def example_inputs(graph: Graph, batch: int, *, seed: int = 0, high: int = 1) -> tuple:
    """One tensor per input of `graph`, in order (see example_tensors)."""
    return example_tensors(graph.inputs.values(), batch, seed=seed, high=high)


def example_tensors(inputs, batch: int, *, seed: int = 0, high: int = 1) -> tuple:
    """One tensor per Input (inputs.py), in order, of its shape and dtype with `batch` samples:
    floats drawn from N(0, 1), integers (token ids) from [0, high), booleans False."""
    generator = torch.Generator().manual_seed(seed)
    tensors = []
    for spec_input in inputs:
        shape, dtype = (batch, *spec_input.shape), spec_input.torch_dtype()
        if dtype.is_floating_point:
            tensors.append(torch.randn(shape, generator=generator).to(dtype))
        elif dtype == torch.bool:
            tensors.append(torch.zeros(shape, dtype=dtype))
        else:
            tensors.append(torch.randint(0, high, shape, generator=generator, dtype=dtype))
    return tuple(tensors)


def output_names(graph: Graph) -> list[str]:
    """The outputs' names: the nodes returned (a dict `outputs:`'s keys), each once."""
    outputs = graph.outputs
    names = list(outputs) if isinstance(outputs, (dict, list)) else [outputs]
    seen: dict[str, int] = {}
    unique = []
    for name in map(str, names):
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return unique


def _dynamic(inputs: tuple) -> tuple:
    batch = torch.export.Dim("batch", min=1)
    return tuple({0: batch} for _ in inputs)


# --- the formats -------------------------------------------------------------------------------

def weights_path(path: Path) -> Path:
    """Where `--to python` saves a checkpoint's trained weights, beside the .py file: cnn.weights.pt."""
    return path.with_name(path.stem + ".weights.pt")


def _python(source: Source, path: Path) -> None:
    """The .py file; a checkpoint's weights beside it (weights_path), a state_dict its classes load."""
    from .python_code import python_source
    text = python_source(source.checked, network=source.network, state=source.state)
    if source.trained:
        state = source.model.state_dict()
        _atomic(weights_path(path), lambda tmp: torch.save(state, tmp))
    _atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def exported_program(source: Source, to: str = "pt2"):
    """torch.export.export of the model with a dynamic batch dimension (what pt2 and onnx write)."""
    inputs = example_inputs(source.graph, EXAMPLE_BATCH)
    with quiet():
        try:
            return torch.export.export(source.model, inputs, dynamic_shapes=_dynamic(inputs))
        except Exception as error:   # torch raises many types; each is told as the node that failed
            raise export_error(error, source, to, inputs=inputs) from _cause(error)


def _pt2(source: Source, path: Path) -> None:
    program = exported_program(source, "pt2")
    _atomic(path, lambda tmp: torch.export.save(program, tmp))


def _onnx(source: Source, path: Path) -> None:
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError as error:
        raise SpecError(f"--to onnx needs the package {error.name}, which is not installed", hint=EXTRA_HINT) from None
    program = exported_program(source, "onnx")

    def write(tmp):
        with quiet():
            try:
                torch.onnx.export(program, (), tmp, dynamo=True, input_names=list(source.graph.inputs),
                                  output_names=output_names(source.graph), external_data=False, verbose=False)
                onnx.checker.check_model(tmp, full_check=True)
            except Exception as error:
                raise export_error(error, source, "onnx", program=program) from _cause(error)
    _atomic(path, write)


def _torchscript(source: Source, path: Path) -> None:
    module = scripted(source)

    def write(tmp):
        with quiet():                # torch.jit.save warns that TorchScript is deprecated
            torch.jit.save(module, tmp)
    _atomic(path, write)


def scripted(source: Source):
    """torch.jit.script of the model, else torch.jit.trace of it on the example inputs; a traced
    module must give the model's outputs for other inputs, at another batch size, too."""
    with quiet():
        try:
            return torch.jit.script(source.model)
        except Exception:            # a forward TorchScript's compiler cannot read: trace it instead
            pass
    inputs = example_inputs(source.graph, EXAMPLE_BATCH)
    with watching(source.model) as watch:
        try:
            traced = torch.jit.trace(source.model, inputs, strict=False, check_trace=False)
        except Exception as error:
            raise export_error(error, source, "torchscript", watch) from _cause(error)
    branching = branches_on_values(watch)
    if branching is not None:
        raise traced_wrong(source, watch, branching)
    others = example_inputs(source.graph, CHECK_BATCH, seed=1)
    with torch.no_grad(), quiet():
        want = source.model(*others)
        try:
            got = traced(*others)
        except Exception:            # the trace fixed a size the model computes: wrong at another batch size
            got = None
    if got is None or not _same(want, got):
        raise traced_wrong(source, watch)
    return traced


def _same(a, b) -> bool:
    flat_a, flat_b = torch.utils._pytree.tree_leaves(a), torch.utils._pytree.tree_leaves(b)
    return len(flat_a) == len(flat_b) and all(
        isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and x.shape == y.shape
        and torch.allclose(x, y, rtol=1e-4, atol=1e-5, equal_nan=True) for x, y in zip(flat_a, flat_b))


def _cause(error: Exception):
    """torch's exception as the SpecError's cause only when debugging (SPECBUILD_DEBUG=1)."""
    return error if os.environ.get("SPECBUILD_DEBUG") else None


_WRITERS = {"python": _python, "pt2": _pt2, "onnx": _onnx, "torchscript": _torchscript}


def _atomic(path: Path, write) -> None:
    """write(temp path) beside `path`, then rename it over `path`: whole or not at all."""
    replace_atomically(str(path), write, suffix=path.suffix)
