"""Foreign weights: a state_dict from a file, compared with a built model, then loaded.

A weights file is a flat mapping of tensor names to tensors: what `torch.save(module.state_dict())`
writes (`.pt`, `.pth`, `.bin`), a `.safetensors` file, or a specbuild checkpoint (its model's
weights are taken).  Nothing in a file is ever run: torch files are read with
`torch.load(weights_only=True)`, which refuses any class or function a pickle names, and
safetensors holds no code at all.  A built model's `state_dict` keys are its node names
(`conv1.weight`), so the weights of the hand-written module a spec describes fit it as they are.

`compare` says tensor by tensor what is missing, unexpected or of another shape;
`load_weights_file` loads a file that fits (strictly: every tensor, nothing left over) and
refuses one that does not with that report.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import SpecError, did_you_mean

TORCH_SUFFIXES = (".pt", ".pth", ".bin")
SAFETENSORS_SUFFIX = ".safetensors"
# how training/checkpoint.py writes a checkpoint (its FORMAT, and the payload key of the model's
# weights); repeated here because the compiler stage may not import training/
CHECKPOINT_FORMAT = "specbuild-checkpoint"
CHECKPOINT_WEIGHTS = "model"
_KINDS = "a .pt, .pth or .bin file (torch.save of a state_dict), or a .safetensors file"


def read_state_dict(path, *, network: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors a weights file holds, by name (a SpecError for anything else).  For a
    specbuild checkpoint of several networks (a GAN's), `network` names the one to take."""
    path = _existing_file(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix == SAFETENSORS_SUFFIX:
        data = _read_safetensors(path)
    elif suffix in TORCH_SUFFIXES:
        data = _read_torch(path)
    else:
        raise SpecError(f"cannot tell what kind of weights file this is from its name ({suffix or 'no suffix'})",
                        file=path, hint=f"give {_KINDS}")
    if isinstance(data, dict) and data.get("format") == CHECKPOINT_FORMAT:
        data = _checkpoint_weights(data, path, network)
    return _tensors_only(data, path)


def read_checkpoint(path) -> dict:
    """The whole payload of a specbuild checkpoint ("spec", "model", ...), read weights-only as
    read_state_dict reads; a SpecError for a file that is not one.  checkpoint_state_dict takes
    its weights."""
    path = _existing_file(path)
    data = _read_torch(path)
    if not (isinstance(data, dict) and data.get("format") == CHECKPOINT_FORMAT and isinstance(data.get("spec"), dict)):
        what = "a state_dict" if isinstance(data, dict) else f"a {type(data).__name__}"
        raise SpecError(f"this file is not a specbuild checkpoint (it holds {what}, without a spec)", file=path,
                        hint="give a checkpoint written by `specbuild train`, or the spec itself")
    return data


def checkpoint_state_dict(data: dict, path, network: str | None = None) -> dict[str, torch.Tensor]:
    """The model weights of a checkpoint's payload (read_checkpoint), one network's of several."""
    return _tensors_only(_checkpoint_weights(data, os.fspath(path), network), os.fspath(path))


def _existing_file(path) -> str:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise SpecError("no weights file here", file=path, hint="check the path")
    if os.path.isdir(path):
        raise SpecError("this is a folder, not a weights file", file=path, hint=f"give the file inside it: {_KINDS}")
    if not os.path.isfile(path):
        raise SpecError("this is not a regular file", file=path, hint=f"give {_KINDS}")
    return path


def _read_safetensors(path: str) -> dict:
    from safetensors.torch import load_file
    try:
        return load_file(path, device="cpu")
    except Exception as error:    # safetensors raises SafetensorError and others for a damaged file
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        empty = os.path.getsize(path) == 0
        raise SpecError(f"this file is not a readable safetensors file ({'it is empty' if empty else first})",
                        file=path, hint="the file is truncated or not a safetensors file: was its download or "
                                        "write cut off?") from None


def _read_torch(path: str):
    try:
        with warnings.catch_warnings():   # e.g. "Detected pickle protocol 4": the error below says it better
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:    # torch raises several types for bad files; all mean "not loadable"
        raise _torch_error(path, error) from None


def _torch_error(path: str, error: Exception) -> SpecError:
    text = str(error)
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        return SpecError("this file is not a readable weights file: it is empty", file=path,
                         hint="its write or download was cut off: write it again")
    if not head.startswith((b"PK", b"\x80")):     # torch.save writes a zip archive (a pickle before torch 1.6)
        return SpecError(f"this file is not a torch file (it starts with {head!r}; torch files are zip archives)",
                         file=path, hint=f"give {_KINDS}")
    named = [line.split("GLOBAL", 1)[1].split()[0] for line in text.splitlines() if "GLOBAL " in line]
    # "Unsupported operand": a plain pickle (protocol 4, not torch.save's), which the weights-only reader stops
    if named or "Unsupported global" in text or "Unsupported operand" in text:
        what = f" ({named[0]})" if named else ""
        return SpecError(f"this file holds pickled Python objects{what}, not just tensors: refused to load it",
                         file=path, hint="loading it would run code from the file; save the weights alone, "
                                         "torch.save(module.state_dict(), path), or as .safetensors")
    first = (text.strip().splitlines() or [type(error).__name__])[0].split(". ")[0]
    what = "a damaged or cut-short zip archive" if head.startswith(b"PK") else "a damaged pickle"
    return SpecError(f"this file is not a readable weights file: {what} ({first})", file=path,
                     hint="the file is truncated or damaged: was its write or download cut off?")


def _checkpoint_weights(data: dict, path: str, network: str | None):
    """A specbuild checkpoint's model weights: its state_dict, or one network's of several."""
    weights = data.get(CHECKPOINT_WEIGHTS)
    if not isinstance(weights, dict):
        raise SpecError(f"this specbuild checkpoint holds no model weights ({CHECKPOINT_WEIGHTS!r})", file=path,
                        hint="the file was not written whole by `specbuild train`; use another checkpoint")
    if weights and all(isinstance(value, dict) for value in weights.values()):   # one state_dict per network
        if network in weights:
            return weights[network]
        names = ", ".join(map(str, weights))
        if network is None:
            raise SpecError(f"this checkpoint holds the weights of several networks ({names})", file=path,
                            hint="say which network's to take (network=, --network)")
        raise SpecError(f"this checkpoint holds no network {network!r}", file=path,
                        hint=did_you_mean(network, weights) or f"it holds: {names}")
    return weights


def _tensors_only(data, path: str) -> dict[str, torch.Tensor]:
    if not isinstance(data, dict):
        raise SpecError(f"this file holds a {type(data).__name__}, not a mapping of names to tensors", file=path,
                        hint="save module.state_dict() (a dict of tensors by name)")
    for key, value in data.items():
        if not isinstance(key, str):
            raise SpecError(f"this file holds a key of type {type(key).__name__} ({key!r}); tensor names are strings",
                            file=path, hint="save module.state_dict() (a dict of tensors by name)")
        if not isinstance(value, torch.Tensor):
            nested = [k for k, v in data.items() if isinstance(v, dict) and v
                      and all(isinstance(t, torch.Tensor) for t in v.values())]
            hint = (f"the weights may be the dict under {nested[0]!r}: save that part alone" if nested
                    else "save module.state_dict() (a dict of tensors by name)")
            raise SpecError(f"this file holds a {type(value).__name__} under {key!r}, not a tensor: it is not a "
                            "plain state_dict", file=path, hint=hint)
    return data


@dataclass
class WeightReport:
    """How a weights file's tensors fit a model's (keys in the model's order, then the file's)."""
    total: int                                           # the model's tensors (its state_dict's keys)
    missing: list[str] = field(default_factory=list)     # in the model, not in the file
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the model
    shapes: list[tuple[str, tuple, tuple]] = field(default_factory=list)   # (key, model shape, file shape)
    dtypes: list[tuple[str, torch.dtype, torch.dtype]] = field(default_factory=list)   # (key, model, file)
    tied: dict[str, str] = field(default_factory=dict)   # a key the file lacks -> the file's key it shares a tensor with
    model_shapes: dict[str, tuple] = field(default_factory=dict, repr=False)
    file_shapes: dict[str, tuple] = field(default_factory=dict, repr=False)

    @property
    def fits(self) -> bool:
        return not (self.missing or self.unexpected or self.shapes)

    @property
    def problems(self) -> int:
        return len(self.missing) + len(self.unexpected) + len(self.shapes)

    def render(self) -> str:
        rows = [("missing", key, f"{_shape(self.model_shapes[key])} is not in the file"
                 + _guess(key, self.model_shapes[key], self.unexpected, self.file_shapes)) for key in self.missing]
        rows += [("shape", key, f"the model's is {_shape(model)}, the file's {_shape(got)}")
                 for key, model, got in self.shapes]
        rows += [("unexpected", key, f"{_shape(self.file_shapes[key])} has no place in the model"
                  + _guess(key, self.file_shapes[key], self.missing, self.model_shapes)) for key in self.unexpected]
        rows += [("note", key, f"{str(got).removeprefix('torch.')} in the file, "
                  f"{str(model).removeprefix('torch.')} in the model: converted on loading")
                 for key, model, got in self.dtypes]
        rows += [("note", key, f"not in the file, but the model ties it to {other}: loaded from it")
                 for key, other in self.tied.items()]
        width = max((len(key) for _, key, _ in rows), default=0)
        lines = [f"{kind:10} {key:{width}}  {what}" for kind, key, what in rows]
        prefix = _prefix_hint(self.missing, self.unexpected)
        if prefix:
            lines.append(prefix)
        lines.append(_summary(self))
        return "\n".join(lines)


def _shape(shape) -> str:
    return str(list(shape))


def _guess(key: str, shape: tuple, others: list[str], shapes: dict) -> str:
    """did-you-mean among the other side's unmatched names of the same shape (a renamed tensor)."""
    same = [other for other in others if shapes[other] == shape]
    guess = did_you_mean(key, same, n=1) if same else None
    return f" ({guess})" if guess else ""


def _prefix_hint(missing: list[str], unexpected: list[str]) -> str | None:
    """The file's names and the model's differing by one prefix (`module.` of a DataParallel save)."""
    if not missing or len(missing) != len(unexpected):
        return None
    for longer, shorter, fix in ((unexpected, missing, "remove it from the file's names"),
                                 (missing, unexpected, "add it to the file's names")):
        for prefix in {longer[0][: -len(k)] for k in shorter if longer[0].endswith(k) and len(longer[0]) > len(k)}:
            if {prefix + k for k in shorter} == set(longer):
                side, other = ("file", "model") if longer is unexpected else ("model", "file")
                return f"hint: each {side} name is a {other} name with {prefix!r} in front: {fix}"
    return None


def _summary(report: WeightReport) -> str:
    if report.fits:
        return f"all {report.total} tensors fit"
    parts = [f"{len(report.missing)} missing"] if report.missing else []
    if report.shapes:
        parts.append(f"{len(report.shapes)} of another shape")
    if report.unexpected:
        parts.append(f"{len(report.unexpected)} unexpected")
    count = report.problems
    return (f"{count} problem{'s' if count != 1 else ''}: {', '.join(parts)} (the model has {report.total} "
            f"tensors, the file {len(report.file_shapes)})")


def compare(model_or_state, state: dict) -> WeightReport:
    """How `state` (a weights file's tensors) fits a model (or the model's state_dict)."""
    own = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else dict(model_or_state)
    aliases = _aliases(model_or_state) if isinstance(model_or_state, nn.Module) else {}
    report = WeightReport(total=len(own), model_shapes={k: tuple(v.shape) for k, v in own.items()},
                          file_shapes={k: tuple(v.shape) for k, v in state.items()})
    for key, tensor in own.items():
        if key not in state:
            partner = next((k for k in aliases.get(key, ()) if k in state), None)
            if partner is not None:
                report.tied[key] = partner
            else:
                report.missing.append(key)
        elif tuple(state[key].shape) != tuple(tensor.shape):
            report.shapes.append((key, tuple(tensor.shape), tuple(state[key].shape)))
        elif state[key].dtype != tensor.dtype:
            report.dtypes.append((key, tensor.dtype, state[key].dtype))
    report.unexpected = [key for key in state if key not in own]
    return report


def _aliases(model: nn.Module) -> dict[str, list[str]]:
    """key -> the other keys of the model's state_dict naming the very same tensor (tied weights)."""
    by_tensor: dict[int, list[str]] = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        by_tensor.setdefault(id(tensor), []).append(key)
    return {key: [k for k in keys if k != key] for keys in by_tensor.values() if len(keys) > 1 for key in keys}


def fit_weights(model: nn.Module, state: dict, source=None) -> WeightReport:
    """Load `state` into `model` if every tensor fits (strictly); else a SpecError with the report."""
    report = compare(model, state)
    if not report.fits:
        raise SpecError("these weights do not fit the model:\n" + report.render(),
                        file=os.fspath(source) if source is not None else None,
                        hint="a tensor's name is its node's name and the parameter's (fc.weight): rename the "
                             "file's tensors, or change the spec's node names or sizes")
    if report.tied:
        state = {**state, **{key: state[other] for key, other in report.tied.items()}}
    model.load_state_dict(state, strict=True)
    return report


def load_weights_file(model: nn.Module, path, *, network: str | None = None) -> WeightReport:
    """Read a weights file (see read_state_dict) and load it into `model` (see fit_weights)."""
    return fit_weights(model, read_state_dict(path, network=network), path)
