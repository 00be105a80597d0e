"""The `specbuild` command.

Each subcommand imports what it needs when it runs, so `specbuild validate`
never imports torch.  `main(argv)` returns the exit code (EXIT_*): 0 fine, 1 a
problem with the user's input (every SpecError: a spec, a data or checkpoint
file, an option's value, a place that cannot be written; reported, no
traceback), 2 a usage error (argparse), 3 a bug in specbuild ("internal
error"), 130 interrupted.
"""
from __future__ import annotations

import argparse
import errno
import os
import sys

from ..errors import SpecError
from ..spec.variables import parse_overrides
from .export import add_export_command
from .train import EXIT_CODES, add_train_commands, check_writable, emit, output_error
from .imports import add_import_command
from .report import add_report_command
from .tune import add_tune_command
from .weights import add_weights_command

EXIT_OK, EXIT_INPUT, EXIT_USAGE, EXIT_BUG, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
# OSErrors of the machine rather than of specbuild: a full disk, a place the user may not write
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}
MAX_PNG_HINT = "draw it as text instead: --format mermaid, or --format dot (Graphviz: dot -Tsvg)"


def _validate(args) -> int:
    from ..spec.validate import validate
    failed = 0
    overrides = parse_overrides(args.set)

    def say(text, stream):
        # `validate a.yaml b.yaml | head -1`: a reader that leaves ends the printing, not the checking,
        # so the exit status still tells whether every file is valid
        try:
            print(text, file=stream, flush=True)
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())

    for path in args.files:
        try:
            warnings = validate(path, overrides=overrides)
        except SpecError as error:
            failed += 1
            say(error, sys.stderr)
            continue
        for warning in warnings:
            say(warning, sys.stderr)
        if not args.quiet:
            note = f" ({len(warnings)} warning{'s' if len(warnings) != 1 else ''})" if warnings else ""
            say(f"{path}: ok{note}", sys.stdout)
    return 1 if failed else 0


def _summary(args) -> int:
    from ..compiler.summary import render, summary
    print(render(summary(args.spec, network=args.network, overrides=parse_overrides(args.set))), end="")
    return 0


def _graph(args) -> int:
    from ..compiler.render import MAX_PNG_NODES, node_count, spec_graph, to_dot, to_mermaid, to_png
    drawing = spec_graph(args.spec, overrides=parse_overrides(args.set))
    if args.format == "png":
        count = node_count(drawing)
        if count > MAX_PNG_NODES:
            raise SpecError(f"--format png: the graph has {count:,} nodes, too many for a readable picture "
                            f"(at most {MAX_PNG_NODES:,})", hint=MAX_PNG_HINT)
        out = args.out or os.path.splitext(os.path.basename(args.spec))[0] + ".png"
        check_writable(out)
        try:
            to_png(drawing, out, title=os.path.basename(args.spec))
        except OSError as error:
            raise output_error(out, error) from None
        print(f"wrote {out}")
        return 0
    text = to_mermaid(drawing) if args.format == "mermaid" else to_dot(drawing, os.path.basename(args.spec))
    emit(text, args.out)
    return 0


def _list(args) -> int:
    from .. import registry
    what = args.what
    if what == "specs":
        from .guide_map import ARCHITECTURES, HEADINGS, SPEC_DOCS
        for name, doc in SPEC_DOCS.items():
            print(f"{name:16} {doc['summary']}")
        for name, line in ARCHITECTURES.items():
            print(f"{name:16} {line}")
        print("\nguide heading -> spec")
        for heading, name in HEADINGS.items():
            print(f"  {heading:40} {name}")
        return 0
    if what in ("losses", "optimizers", "schedulers"):
        for name in registry.catalog_names(what):
            print(f"{name:28} {_signature(registry.CATALOG[what][name]['args'])}")
        return 0
    if what == "metrics":
        print("\n".join(registry.METRIC_NAMES))
        return 0
    if what == "datasets":
        from ..data.catalog import DATASETS
        print("\n".join(DATASETS))
        return 0
    types = registry.layer_types()
    if what in types:
        entry = types[what]
        print(f"{what} ({entry.kind}: {entry.target})\n  {_signature(entry.args)}")
        if entry.forward:        # what `in:` (by position) and `forward:` (by name) may give
            print(f"  forward({', '.join(entry.forward)})")
        return 0
    kinds = {"layers": ("module", "wrapper", "user"), "functions": ("function",)}.get(what)
    if kinds is None:
        from ..errors import did_you_mean
        raise SpecError(f"nothing to list named {what!r}", hint=did_you_mean(what, list(types) + LISTABLE)
                        or "try: " + ", ".join(LISTABLE))
    for name, entry in types.items():
        if entry.kind in kinds:
            print(f"{name:28} {_signature(entry.args)}")
    return 0


LISTABLE = ["specs", "layers", "functions", "losses", "optimizers", "schedulers", "metrics", "datasets"]


def _signature(args: dict) -> str:
    parts = []
    for name, spec in args.items():
        parts.append(name if spec["required"] else f"{name}={spec.get('default')!r}")
    return "(" + ", ".join(parts) + ")"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="specbuild", description="PyTorch models written as data.",
                                     epilog=EXIT_CODES + ", 130 interrupted (Ctrl-C)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check specs: schema, graph and shapes, without importing torch",
                       epilog="exit status: 0 every spec is valid, 1 a spec has a problem (each is reported), "
                              "2 usage, 3 a bug in specbuild")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a param (or a dotted key)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only problems")
    p.set_defaults(run=_validate)

    p = sub.add_parser("summary", help="per layer: type, inputs, output shape and parameters (no weights allocated)",
                       epilog=EXIT_CODES)
    p.add_argument("spec")
    p.add_argument("--network", help="only this network of a multi-network spec")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.set_defaults(run=_summary)

    p = sub.add_parser("graph", help="the spec's graph as Mermaid, Graphviz DOT or PNG", epilog=EXIT_CODES)
    p.add_argument("spec")
    p.add_argument("--format", choices=["mermaid", "dot", "png"], default="mermaid")
    p.add_argument("--out", "-o", help="file to write (PNG default: <spec name>.png)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.set_defaults(run=_graph)

    p = sub.add_parser("list", help="shipped specs and the guide's headings, or the known layer types, losses...")
    p.add_argument("what", nargs="?", default="specs", help=" | ".join(LISTABLE) + " | a layer type")
    p.set_defaults(run=_list)

    add_train_commands(sub)
    add_weights_command(sub)
    add_export_command(sub)
    add_import_command(sub)
    add_tune_command(sub)
    add_report_command(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv             # as given: `train --nproc` hands it on to its workers
    try:
        return args.run(args)
    except SpecError as error:
        print(error, file=sys.stderr)
        return EXIT_INPUT
    except BrokenPipeError:   # `specbuild list | head`: the reader left; nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as error:
        if error.errno not in ENVIRONMENT_ERRNOS or os.environ.get("SPECBUILD_DEBUG"):
            return _bug(error)
        where = f": {error.filename}" if error.filename else ""
        print(f"specbuild: {(error.strerror or str(error)).lower()}{where}", file=sys.stderr)
        return EXIT_INPUT
    except Exception as error:
        return _bug(error)


def _bug(error: Exception) -> int:
    """A bug of ours: say so plainly, keep the traceback for SPECBUILD_DEBUG."""
    if os.environ.get("SPECBUILD_DEBUG"):
        raise error
    print(f"specbuild: internal error: {type(error).__name__}: {error}\n"
          "This is a bug in specbuild; rerun with SPECBUILD_DEBUG=1 for the traceback.", file=sys.stderr)
    return EXIT_BUG


if __name__ == "__main__":
    raise SystemExit(main())
