"""`specbuild report RUN_DIR`: one self-contained report.html of a run or tune folder."""
from __future__ import annotations

from .train import EXIT_CODES


def add_report_command(sub) -> None:
    p = sub.add_parser("report", help="write report.html for a run folder or a tune folder", epilog=EXIT_CODES)
    p.add_argument("folder", metavar="RUN_DIR")
    p.add_argument("--out", "-o", help="where to write it (default: RUN_DIR/report.html)")
    p.set_defaults(run=_report)


def _report(args) -> int:
    from ..report.write import write_report
    path = write_report(args.folder, out=args.out)
    print(f"wrote {path}")
    return 0
