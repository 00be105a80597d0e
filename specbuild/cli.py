"""The `specbuild` command.

Each subcommand imports what it needs when it runs, so `specbuild validate`
never imports torch.  `main(argv)` returns the exit code: 0 fine, 1 a problem
with the user's input (reported, no traceback), 2 a usage error.
"""
from __future__ import annotations

import argparse
import os
import sys

from .errors import SpecError


def _validate(args) -> int:
    from .validate import validate
    failed = 0
    overrides = _overrides(args.set)
    for path in args.files:
        try:
            warnings = validate(path, overrides=overrides)
        except SpecError as error:
            failed += 1
            print(error, file=sys.stderr)
            continue
        for warning in warnings:
            print(warning, file=sys.stderr)
        if not args.quiet:
            note = f" ({len(warnings)} warning{'s' if len(warnings) != 1 else ''})" if warnings else ""
            print(f"{path}: ok{note}")
    return 1 if failed else 0


def _overrides(assignments) -> dict:
    from .variables import parse_assignment
    out = {}
    for text in assignments or []:
        try:
            key, value = parse_assignment(text)
        except ValueError as error:
            raise SpecError(str(error), hint="write --set name=value, e.g. --set hidden=64") from None
        out[key] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="specbuild", description="PyTorch models written as data.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check specs: schema, graph and shapes, without importing torch")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a param (or a dotted key)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only problems")
    p.set_defaults(run=_validate)
    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


_EXTRA_COMMANDS: list = []   # filled by the modules that add subcommands


def main(argv=None) -> int:
    from . import cli_commands  # noqa: F401  (registers the other subcommands)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except SpecError as error:
        print(error, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug of ours: say so plainly, keep the traceback for SPECBUILD_DEBUG
        if os.environ.get("SPECBUILD_DEBUG"):
            raise
        print(f"specbuild: internal error: {type(error).__name__}: {error}\n"
              "This is a bug in specbuild; rerun with SPECBUILD_DEBUG=1 for the traceback.", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
