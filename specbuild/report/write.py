"""`write_report(folder)`: the report.html of a run folder or a tune folder.

Written beside the folder's other files unless `out` says where, atomically (a
temporary file renamed over the old page), so a run killed while writing it leaves
the previous page or none, never half of one.
"""
from __future__ import annotations

from pathlib import Path

from ..atomic import write_text_atomically
from ..errors import SpecError
from . import run_page, tune_page
from .folder import folder_kind, read_run, read_tune

REPORT = "report.html"


def write_report(folder, out=None) -> Path:
    """Write the report of `folder` (a run's or a study's) to `out` (default FOLDER/report.html)."""
    folder = Path(folder)
    kind = folder_kind(folder)
    target = _target(folder, out)
    if kind == "tune":
        page = tune_page.render(read_tune(folder), target.parent)
    else:
        page = run_page.render(read_run(folder))
    try:
        write_text_atomically(target, page)
    except OSError as error:
        raise SpecError(f"cannot write {target}: {error.strerror or error}",
                        hint="give --out a file in a folder you can write to") from None
    return target


def _target(folder: Path, out) -> Path:
    target = folder / REPORT if out is None else Path(out)
    if target.is_dir():
        target = target / REPORT
    if not target.parent.is_dir():
        raise SpecError(f"cannot write {target}: the folder {target.parent} does not exist",
                        hint="make the folder first, or give --out a file in an existing folder")
    return target
