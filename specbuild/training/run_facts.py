"""What a run records for its report, and the report itself: an observer every run gets.

At its start a run writes environment.json (versions, platform, device, seed, precision,
workers, the data set's size, the start time and the command line); at its end, however
it ends, evaluation.json (how it ended, the best epoch, and for each classification or
binary objective the confusion matrix and per-class precision, recall, f1 and support of
the last epoch's model on the held-out set, by scikit-learn), then report.html
(specbuild.report).  A report that cannot be written is a note: the run's own outcome
(its result, its error) is never replaced by the report's.
"""
from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import re
import sys
import time

import numpy as np
import torch

from ..atomic import write_text_atomically
from ..errors import SpecError
from ..report.write import write_report
from .evaluate import CLASS_KINDS, EVAL_BATCH
from .metrics import predicted_classes
from .objectives import target_of

MAX_MATRIX_CLASSES = 50          # a larger matrix is unreadable; the per-class figures are still kept
MAX_CLASSES = 10_000             # beyond this (a language model's vocabulary) no per-class figures either


class RunFacts:
    def __init__(self):
        self.started = None
        self.outer = None          # an exception being handled around the whole run: not the run's own

    def run_start(self, session, loop) -> None:
        self.started, self.outer = time.monotonic(), sys.exc_info()[1]
        if session.folder.writer:
            _write_json(session.folder.path / "environment.json", environment(session, loop))

    def run_end(self, session, loop) -> None:
        if not session.folder.writer or not session.folder.path.is_dir():
            return
        error = sys.exc_info()[1]          # called from the session's `finally`: how the run ended
        error = None if error is self.outer else error
        try:
            _write_json(session.folder.path / "evaluation.json", self.evaluation(session, loop, error))
            write_report(session.folder.path)
        except Exception as failure:       # noqa: BLE001 - the run's outcome stands whatever happens here
            why = failure if isinstance(failure, (SpecError, OSError)) else f"{type(failure).__name__}: {failure}"
            session.progress.note(f"note: the run's report.html was not written ({why})")

    def evaluation(self, session, loop, error) -> dict:
        history, config = session.history, session.config
        outcome, message = "finished", None
        if error is not None:
            outcome, message = "stopped", str(error).strip() or type(error).__name__
        elif history and history[-1].get("epoch", 0) < session.epochs:
            outcome, message = "early stop", (f"Early stopping: {getattr(loop, 'monitor', 'the monitored metric')} "
                                              f"did not improve for {config.patience} epochs.")
        facts = {"outcome": outcome, "message": message, "epochs": session.epochs,
                 "epoch": history[-1].get("epoch") if history else 0, "task": session.task,
                 "monitor": getattr(loop, "monitor", None), "best": session.best,
                 "finished": _now(), "seconds": None if self.started is None else
                 round(time.monotonic() - self.started, 3), "objectives": []}
        if error is None and history and getattr(loop, "test_data", None) is not None and len(loop.test_data):
            facts["objectives"] = class_figures(loop, facts["epoch"])
        return facts


def environment(session, loop) -> dict:
    device = session.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        "Apple GPU (MPS)" if device.type == "mps" else None
    bundle = getattr(loop, "bundle", None)
    data = None if bundle is None else {"name": bundle.info.get("name"), "train": len(bundle.train),
                                        "held_out": len(bundle.test)}
    config = session.config
    return {"started": _now(), "command": _command(), "specbuild": _version("specbuild"),
            "python": platform.python_version(), "torch": torch.__version__, "torchvision": _version("torchvision"),
            "numpy": np.__version__, "scikit-learn": _version("scikit-learn"), "platform": platform.platform(),
            "cpu": _cpu_name(), "cpus": os.cpu_count(), "device": str(device), "device_name": name,
            "cuda": torch.version.cuda if device.type == "cuda" else None, "seed": config.seed,
            "precision": config.precision, "compile": bool(config.compile), "world_size": session.dist.world_size,
            "threads": torch.get_num_threads(), "resumed_at_epoch": session.start_epoch or None, "data": data}


def class_figures(loop, epoch: int) -> list:
    """Per classification or binary objective, the model's confusion matrix and per-class figures
    on the held-out set (every position of a per-position classifier counts as a sample)."""
    wanted = [o for o in loop.objectives if o.kind in CLASS_KINDS]
    if not wanted:
        return []
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    outputs = _outputs(loop.model, loop.test_data, {o.on for o in wanted})
    data, info = loop.test_data, loop.bundle.info
    figures = []
    for o in wanted:
        scores, labels = o.per_sample(outputs[o.on], target_of(o, data.inputs, data.targets))
        count = scores.shape[1] if o.kind == "classification" else 2
        entry = {"name": o.name, "on": o.on, "target": o.target, "kind": o.kind, "loss": o.type, "epoch": epoch,
                 "samples": int(labels.numel())}
        if not torch.isfinite(scores).all():
            figures.append({**entry, "note": "the model's outputs are not finite, so no class is predicted"})
            continue
        if count > MAX_CLASSES:
            figures.append({**entry, "note": f"{count:,} classes: too many to count one by one"})
            continue
        # the classes the metrics counted (val_accuracy): from the same probabilities, by the same rule
        probabilities = o.probabilities(scores, o.on in loop.probability_nodes).float().cpu().numpy()
        truth, guess = labels.reshape(-1).long().cpu().numpy(), predicted_classes(probs=probabilities)
        ids = list(range(count))
        precision, recall, f1, support = precision_recall_fscore_support(truth, guess, labels=ids, zero_division=0)
        entry.update(accuracy=float((truth == guess).mean()) if len(truth) else None,
                     classes=_class_names(info, o.target, count),
                     per_class={"precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(),
                                "support": support.tolist()})
        if count <= MAX_MATRIX_CLASSES:
            entry["confusion"] = confusion_matrix(truth, guess, labels=ids).tolist()
        else:
            entry["note"] = f"{count:,} classes: too many for a readable confusion matrix"
        figures.append(entry)
    return figures


def _outputs(model, data, nodes: set) -> dict:
    """The wanted nodes' outputs over the whole held-out set, in its order."""
    was_training = model.training
    model.eval()
    collected = {n: [] for n in nodes}
    try:
        with torch.no_grad():
            for inputs, _ in data.batches(EVAL_BATCH, shuffle=False):
                out = model(*inputs)
                for n in nodes:
                    collected[n].append(out[n].float())
    finally:
        model.train(was_training)
    return {n: torch.cat(parts) for n, parts in collected.items()}


def _class_names(info: dict, target: str, count: int) -> list:
    """The data set's names for the classes where it gives them, else the class ids."""
    entry = (info.get("targets") or {}).get(target) or {}
    for names in (entry.get("names"), entry.get("classes"), info.get("class_names"), info.get("classes")):
        if isinstance(names, (list, tuple)) and len(names) == count:
            return [str(n) for n in names]
    return [str(i) for i in range(count)]


def _write_json(path, value) -> None:
    # one line per key, a list of plain values (a matrix row, the class names) on one line
    text = re.sub(r"\[([^\[\]{}]*)\]", lambda m: "[" + re.sub(r"\s*\n\s*", " ", m.group(1)).strip() + "]",
                  json.dumps(value, indent=1, default=str)) + "\n"
    write_text_atomically(path, text)


def _command() -> list:
    """This process's command line, its program as a person types it."""
    program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    program = "python -m specbuild" if program == "__main__.py" else program
    return [program, *sys.argv[1:]]


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
