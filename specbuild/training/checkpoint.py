"""Checkpoints: the spec plus weights and training state, never a pickled module.

A checkpoint is a dict of plain data (dicts, lists, str, numbers, None) and
tensors, so `torch.load(..., weights_only=True)` reads it without running any
code from the file.  The model is rebuilt from the spec, then `model` (a
state_dict) is loaded into it.

Payload keys: "spec" (dict) and "model" (state_dict) are required; "optimizer",
"scheduler", "rng" (from rng_state()), "epoch", "step", "metrics" and anything
else plain are kept as given.  save_checkpoint adds "format" and "format_version".

Writes are atomic: a temp file in the same folder is written, flushed and
fsynced, then os.replace'd over the target and the folder fsynced.  A crash
mid-write leaves the previous checkpoint intact and at most a stray temp file
(".<name>.tmp-<pid>-<random>"), which the next save to that path removes.
"""
from __future__ import annotations

import collections
import errno
import glob
import os
import random
import shutil
import warnings

import numpy as np
import torch

from ..atomic import replace_atomically
from ..errors import Problem, SpecError


FORMAT = "specbuild-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(SpecError):
    """A checkpoint cannot be written or read back."""

    def __init__(self, message: str, *, hint: str | None = None, file: str | None = None):
        super().__init__([Problem(message, file=file, hint=hint)])


def _plain(obj, where: str):
    """obj with numpy values made into tensors/numbers; CheckpointError for anything
    weights_only could not load back (modules, functions, class instances)."""
    if isinstance(obj, np.generic):     # first: np.float64 is also a float, but pickles as a numpy global
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str, bytes, torch.Tensor, torch.dtype, torch.device,
                                       torch.Size)):
        return obj
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, dict):
        items = {k: _plain(v, f"{where}[{k!r}]") for k, v in obj.items()}
        for k in items:
            if not isinstance(k, (str, int, float, bool, type(None))):
                raise CheckpointError(f"{where} has a key of type {type(k).__name__}",
                                      hint="checkpoint dict keys must be strings or numbers")
        if isinstance(obj, collections.OrderedDict):      # state_dicts: keep the class and its _metadata
            out = collections.OrderedDict(items)
            if hasattr(obj, "_metadata"):
                out._metadata = obj._metadata
            return out
        return items                                       # other dict subclasses (e.g. a YAML mapping) -> dict
    if isinstance(obj, (list, tuple)):
        items = [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    if isinstance(obj, torch.nn.Module):
        raise CheckpointError(f"{where} is a {type(obj).__name__} module",
                              hint="store module.state_dict(); checkpoints never pickle modules")
    raise CheckpointError(f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}, which a weights-only "
                          "checkpoint cannot hold", hint="store plain data (dicts, lists, numbers, strings) and tensors")


def save_checkpoint(path, payload: dict) -> None:
    """Write payload to path atomically (see the module docstring)."""
    path = os.fspath(path)
    if not isinstance(payload, dict) or "spec" not in payload or "model" not in payload:
        raise CheckpointError("a checkpoint payload must be a dict with 'spec' and 'model' (a state_dict)", file=path,
                              hint="pass {'spec': spec_dict, 'model': model.state_dict(), ...}")
    data = _plain(dict(payload), "checkpoint")
    data.update(format=FORMAT, format_version=FORMAT_VERSION)
    _atomic_write(path, lambda f: torch.save(data, f))


def copy_checkpoint(source, path) -> None:
    """Copy a checkpoint file to path, byte for byte, as atomically as save_checkpoint writes one."""
    with open(source, "rb") as src:
        _atomic_write(os.fspath(path), lambda f: shutil.copyfileobj(src, f))


def _atomic_write(path: str, write) -> None:
    """write(file) into a temp file beside path, then rename it over path (see the module docstring)."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        _write(path, folder, write)
    except OSError as error:
        raise _save_error(path, error) from None
    _fsync_folder(folder)       # make the rename itself durable


class CheckpointSaveError(CheckpointError, OSError):
    """A checkpoint could not be written (the disk is full...): reported as the user's to fix, and
    still an OSError with the errno of the failure."""

    def __init__(self, message: str, *, hint: str, file: str, errno_: int | None):
        super().__init__(message, hint=hint, file=file)
        self.errno, self.filename = errno_, file


def _save_error(path: str, error: OSError) -> CheckpointError:
    """A failed save, told plainly: the write went to a temp file, so what `path` held is intact."""
    kept = (f"the previous {os.path.basename(path)} there is intact" if os.path.exists(path)
            else "nothing was written there")
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        message = f"no space left on the device to save this checkpoint; {kept}"
        hint = "free some space (or give --out a folder on another disk), then continue with --resume"
    else:
        message = f"cannot save this checkpoint ({(error.strerror or str(error)).lower()}); {kept}"
        hint = "check that the run folder exists and can be written"
    return CheckpointSaveError(message, hint=hint, file=path, errno_=error.errno)


def _write(path: str, folder: str, write) -> None:
    os.makedirs(folder, exist_ok=True)
    _remove_stray_temps(path)

    def fill(tmp: str) -> None:
        with open(tmp, "wb") as f:
            write(f)

    replace_atomically(path, fill, tag=f"{os.getpid()}-")


def _fsync_folder(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:             # e.g. Windows: folders cannot be opened; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_stray_temps(path: str) -> None:
    """Delete temp files left by a crashed save to this path (not those of a live writer)."""
    remove_stray_temps(os.path.dirname(os.path.abspath(path)), glob.escape(os.path.basename(path)))


def remove_stray_temps(folder, name_pattern: str = "*") -> None:
    """Delete the temp files crashed saves left in `folder` (a run killed mid-save leaves one;
    the next save to the same file removes it, but best.pt may never be saved again)."""
    for tmp in glob.glob(os.path.join(os.fspath(folder), f".{name_pattern}.tmp-*")):
        try:
            pid = int(os.path.basename(tmp).rsplit(".tmp-", 1)[1].split("-", 1)[0])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and _alive(pid):
            continue
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True             # exists but is not ours, or unknown: leave its file alone
    return True


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a checkpoint written by save_checkpoint; never unpickles code."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError("no checkpoint file here", file=path,
                              hint="check the path; `specbuild train` writes checkpoints under runs/")
    if os.path.isdir(path):
        raise CheckpointError("this is a folder, not a checkpoint file", file=path,
                              hint="give the checkpoint file inside it, e.g. last.pt or best.pt")
    try:
        with warnings.catch_warnings():     # e.g. "Detected pickle protocol 4": the error below says it better
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:      # torch raises several types for bad files; all mean "not loadable"
        raise _load_error(path, e) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        what = f"a dict with keys {sorted(map(str, data))[:6]}" if isinstance(data, dict) else type(data).__name__
        hint = "a bare state_dict has no spec to rebuild the model from; " if isinstance(data, dict) else ""
        raise CheckpointError(f"this file is not a specbuild checkpoint (it holds {what})", file=path,
                              hint=hint + "use a checkpoint written by `specbuild train`")
    for key, what in (("spec", "the spec to rebuild the model from"), ("model", "the model's weights")):
        if not isinstance(data.get(key), dict):
            found = "has no" if key not in data else f"holds a {type(data[key]).__name__} as"
            raise CheckpointError(f"this checkpoint {found} {key!r} ({what})", file=path,
                                  hint="the file was not written whole by `specbuild train`; use another checkpoint")
    if data.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"this checkpoint was written by a newer specbuild (format {data['format_version']})",
                              file=path, hint="upgrade specbuild to read it")
    return data


ZIP_MAGIC = b"PK"                 # torch.save writes a zip archive
PICKLE_PROTOCOL = b"\x80"         # ... and before torch 1.6, a pickle (protocol 2: b"\x80\x02")


def _load_error(path: str, error: Exception) -> CheckpointError:
    """Why torch.load could not read `path`: an empty file, a file that is no torch file at all, a
    pickle of Python objects (refused: loading it would run code), or a damaged torch file."""
    text = str(error)
    with open(path, "rb") as f:
        head = f.read(4)
    found = [line.split("GLOBAL", 1)[1].split()[0] for line in text.splitlines() if "GLOBAL " in line]
    if not found and head[:1] == PICKLE_PROTOCOL:       # a plain pickle: torch stops before its globals
        found = _pickle_globals(path)
        if found is None:
            return _not_torch(path, "its bytes are not a pickle either")
    if found or "Unsupported global" in text:
        what = f" ({found[0]})" if found else ""
        return CheckpointError(f"this file holds pickled Python objects{what}, not just weights: refused to load it",
                               file=path, hint="loading it would run code from the file; load only checkpoints "
                               "written by specbuild (spec + state_dict) or ones you trust")
    if not head:
        return CheckpointError("this file is not a readable checkpoint: it is empty", file=path,
                               hint="its write was cut off, or it was truncated: use an earlier checkpoint")
    if not head.startswith((ZIP_MAGIC, PICKLE_PROTOCOL)):
        return _not_torch(path, f"it starts with {head!r}; torch files are zip archives")
    first = next((line.strip() for line in text.splitlines() if line.strip().startswith("Unsupported")),
                 (text.strip().splitlines() or [type(error).__name__])[0]).split(". ")[0]
    return CheckpointError(f"this file is not a readable checkpoint ({first})", file=path,
                           hint="the file is truncated or not a torch checkpoint: was its write cut off? "
                                "use an earlier checkpoint")


def _not_torch(path: str, why: str) -> CheckpointError:
    return CheckpointError(f"this file is not a readable checkpoint: it is not a torch file at all ({why})",
                           file=path, hint="give a checkpoint written by `specbuild train`, e.g. a run folder's last.pt")


def _pickle_globals(path: str) -> list | None:
    """The classes and functions a pickle file names, read without running it (pickletools only
    decodes opcodes); None when the file is no pickle."""
    import pickletools
    names, strings = [], []
    try:
        with open(path, "rb") as f:
            for op, arg, _ in pickletools.genops(f):
                if op.name in ("GLOBAL", "INST"):
                    names.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str):
                    strings.append(arg)
    except Exception:           # pickletools raises ValueError and others on bytes that are no pickle
        return None
    return names


def load_weights(model, weights: dict, path: str) -> None:
    """Load a checkpoint's state_dict into the model rebuilt from its spec; a weight that is missing,
    extra or of another shape is a CheckpointError naming it (not torch's RuntimeError)."""
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    extra = [k for k in weights if k not in own]
    shapes = [(k, tuple(weights[k].shape), tuple(v.shape)) for k, v in own.items()
              if k in weights and hasattr(weights[k], "shape") and tuple(weights[k].shape) != tuple(v.shape)]
    hint = "the weights do not belong to the spec stored with them; use a checkpoint written by `specbuild train`"
    if shapes:
        name, got, want = shapes[0]
        more = f" (and {len(shapes) - 1} more)" if len(shapes) > 1 else ""
        raise CheckpointError(f"the checkpoint's weight {name} has shape {list(got)}, but the model its spec "
                              f"builds wants {list(want)}{more}", file=path, hint=hint)
    if missing or extra:
        listed = ", ".join((missing or extra)[:5]) + (" ..." if len(missing or extra) > 5 else "")
        what = "lacks the weights" if missing else "holds weights the model has no place for"
        raise CheckpointError(f"the checkpoint {what}: {listed}", file=path, hint=hint)
    model.load_state_dict(weights)


def rng_state() -> dict:
    """Every random generator's state, as tensors and plain data (loads under weights_only)."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
             "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}}
    # only when CUDA is in use already: asking would otherwise start a context on every GPU
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what rng_state() captured (CUDA only where this machine has the GPUs)."""
    torch.set_rng_state(state["torch"].cpu())
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["name"], npy["keys"].cpu().numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    if state.get("cuda") is not None and torch.cuda.is_available():
        cuda = [s.cpu() for s in state["cuda"]][: torch.cuda.device_count()]
        for device, s in enumerate(cuda):
            torch.cuda.set_rng_state(s, device)
