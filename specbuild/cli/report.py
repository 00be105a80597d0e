"""`specbuild report RUN_DIR`: one self-contained report.html of a run or tune folder.

Every run writes its own at its end; this command rewrites it (after a run folder was
copied, or for one written before runs made reports), or writes it elsewhere with --out.
It reads files only: an older run folder lacking evaluation.json gets a page that says
so rather than an evaluation, which would need its data set and a model."""
from __future__ import annotations

from .train import EXIT_CODES


def add_report_command(sub) -> None:
    p = sub.add_parser("report", help="write report.html for a run folder or a tune folder", epilog=EXIT_CODES)
    p.add_argument("folder", metavar="RUN_DIR")
    p.add_argument("--out", "-o", metavar="FILE",
                   help="where to write it: a file, or a folder to hold report.html (default: RUN_DIR/report.html)")
    p.set_defaults(run=_report)


def _report(args) -> int:
    from ..report.write import write_report
    path = write_report(args.folder, out=args.out)
    print(f"wrote {path}")
    return 0
