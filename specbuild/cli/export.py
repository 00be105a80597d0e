"""`specbuild export SPEC_OR_CHECKPOINT --to python|pt2|onnx|torchscript [-o FILE]`.

A checkpoint written by `specbuild train` exports its trained weights (the spec comes from it);
a spec exports freshly initialised ones.  It prints the file written and where the weights came
from.  specbuild/export/formats.py does the work.
"""
from __future__ import annotations

from ..spec.variables import parse_overrides
from .train import EXIT_CODES, check_writable

FORMAT_NAMES = ("python", "pt2", "onnx", "torchscript")


def add_export_command(sub) -> None:
    p = sub.add_parser("export", help="write the model (a spec's, or a checkpoint's with its trained weights) as a "
                                      "Python file, a torch.export program, ONNX or TorchScript", epilog=EXIT_CODES)
    p.add_argument("source", metavar="SPEC_OR_CHECKPOINT",
                   help="a spec (fresh weights) or a checkpoint written by `specbuild train` (trained weights)")
    p.add_argument("--to", required=True, choices=FORMAT_NAMES,
                   help="python: a .py file; pt2: torch.export (.pt2); onnx: .onnx (needs the export extra); "
                        "torchscript: torch.jit (.pt)")
    p.add_argument("--out", "-o", metavar="FILE", help="file to write (default: <spec name>.py/.pt2/.onnx/.pt here)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a param or a dotted key")
    p.add_argument("--network", help="the network to export, in a spec of several")
    p.set_defaults(run=_export)


def _export(args) -> int:
    from ..export.formats import FORMATS, default_path, load_source, weights_path, write
    source = load_source(args.source, network=args.network, overrides=parse_overrides(args.set))
    out = args.out or str(default_path(source, args.to))
    check_writable(out)
    path = write(source, args.to, out)
    print(f"wrote {path}: {FORMATS[args.to][1]}")
    if args.to == "python" and source.trained:
        print(f"wrote {weights_path(path)}: its trained weights, for model.load_state_dict(torch.load(...))")
    print(source.weights)
    return 0
