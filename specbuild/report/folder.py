"""Reading what a run folder or a tune folder holds, for a report.

A report reads files only (training writes them; see training/run_folder.py and
training/run_facts.py): a file that is missing is None, one that cannot be read is
None too, with a line in `problems` saying why, so a page shows what there is and
notes the rest.  A folder that holds neither a run nor a study is a SpecError.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SpecError

RUN_FILES = ("spec.yaml", "metrics.jsonl", "last.pt")    # any one of them: a run folder
TUNE_FILE = "trials.json"
MAX_PNG_BYTES = 8_000_000        # a picture larger than this is left out rather than inlined


@dataclass
class RunFiles:
    path: Path
    spec_text: str | None = None
    history: list = field(default_factory=list)
    environment: dict | None = None
    evaluation: dict | None = None
    curves: bytes | None = None
    samples: list = field(default_factory=list)     # (file name, PNG bytes): the first and last grid
    sample_count: int = 0
    problems: list = field(default_factory=list)    # files there that could not be read


@dataclass
class TuneFiles:
    path: Path
    study: dict
    plots: dict = field(default_factory=dict)        # "history"/"importances" -> PNG bytes
    problems: list = field(default_factory=list)


def folder_kind(folder: Path) -> str:
    """"run" or "tune"; a SpecError naming the folder and what it should hold otherwise."""
    if not folder.exists():
        raise SpecError(f"{folder} does not exist", hint="give the folder of a run (runs/NAME-TIME) or of a study")
    if not folder.is_dir():
        where = f"; its folder is {folder.parent}" if folder.parent.joinpath(RUN_FILES[0]).exists() else ""
        raise SpecError(f"{folder} is a file, not a run folder{where}", hint="give the folder the run wrote")
    if (folder / TUNE_FILE).exists():
        return "tune"
    if any((folder / name).exists() for name in RUN_FILES):
        return "run"
    inside = sorted(p for p in folder.iterdir() if p.is_dir() and any((p / n).exists() for n in RUN_FILES))
    hint = "give the folder `specbuild train` or `specbuild tune` wrote"
    if inside:          # runs/ itself, say: name what it holds
        hint = f"it holds {len(inside)} run folder{'s' * (len(inside) > 1)}: give one, such as {inside[-1]}"
    raise SpecError(f"{folder} holds no run: a run folder holds spec.yaml, metrics.jsonl and last.pt, "
                    f"a study's folder trials.json", hint=hint)


def read_run(folder: Path) -> RunFiles:
    run = RunFiles(folder)
    run.spec_text = _read_text(folder / "spec.yaml", run.problems)
    run.history = _read_history(folder / "metrics.jsonl", run.problems)
    run.environment = _read_json(folder / "environment.json", run.problems, dict)
    run.evaluation = _read_json(folder / "evaluation.json", run.problems, dict)
    run.curves = _read_png(folder / "curves.png", run.problems)
    grids = sorted((folder / "samples").glob("epoch_*.png")) if (folder / "samples").is_dir() else []
    run.sample_count = len(grids)
    for path in dict.fromkeys(grids[:1] + grids[-1:]):      # the first and the last, once if the same
        data = _read_png(path, run.problems)
        if data is not None:
            run.samples.append((path.name, data))
    return run


def read_tune(folder: Path) -> TuneFiles:
    problems: list = []
    study = _read_json(folder / TUNE_FILE, problems, dict)
    if study is None:
        raise SpecError(f"{folder / TUNE_FILE} cannot be read: {problems[0] if problems else 'it is empty'}",
                        hint="it is written by `specbuild tune`; run the study again to rewrite it")
    tune = TuneFiles(folder, study, problems=problems)
    for key, name in (study.get("plots") or {}).items():
        if isinstance(name, str) and name and Path(name).name != name:
            problems.append(f"the {key} plot {name!r} is not a file of the study's folder; it is left out")
        elif isinstance(name, str) and name:
            data = _read_png(folder / name, problems)
            if data is not None:
                tune.plots[key] = data
    return tune


def epoch_of(name: str) -> int | None:
    """The epoch a sample grid's file name gives (epoch_007.png -> 7)."""
    match = re.fullmatch(r"epoch_(\d+)\.png", name)
    return int(match.group(1)) if match else None


def _read_text(path: Path, problems: list) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        problems.append(f"{path.name} cannot be read ({_why(error)})")
        return None


def _read_json(path: Path, problems: list, kind: type):
    raw = _read_text(path, problems)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError as error:
        problems.append(f"{path.name} is not valid JSON ({error})")
        return None
    if not isinstance(value, kind):
        problems.append(f"{path.name} holds a {type(value).__name__}, not a {kind.__name__}")
        return None
    return value


def _read_history(path: Path, problems: list) -> list:
    raw = _read_text(path, problems)
    rows = []
    for number, line in enumerate((raw or "").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if isinstance(row, dict):
            rows.append(row)
        else:
            problems.append(f"{path.name} line {number} is not a JSON object; it is left out")
    return rows


def _read_png(path: Path, problems: list) -> bytes | None:
    try:
        size = path.stat().st_size
        if size > MAX_PNG_BYTES:
            problems.append(f"{path.name} is {size:,} bytes, too large to put in the page")
            return None
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        problems.append(f"{path.name} cannot be read ({_why(error)})")
        return None
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        problems.append(f"{path.name} is not a PNG image")
        return None
    return data


def _why(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)
