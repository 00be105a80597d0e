"""`specbuild check-weights SPEC FILE`: do a file's weights fit the model a spec builds?

It builds the model (fresh weights), reads the file (never running code from it) and prints,
tensor by tensor, what is missing, unexpected or of another shape, then a line summing up.
"""
from __future__ import annotations

from ..spec.variables import parse_overrides

EPILOG = ("exit status: 0 the weights fit, 1 they do not (the report says why) or a problem with the input "
          "(a spec, a file: reported, no traceback), 2 usage, 3 a bug in specbuild")


def add_weights_command(sub) -> None:
    p = sub.add_parser("check-weights", help="do a weights file's tensors (.pt, .pth, .bin, .safetensors) fit a spec's "
                                             "model? names and shapes, tensor by tensor", epilog=EPILOG)
    p.add_argument("spec")
    p.add_argument("file", metavar="FILE", help="a state_dict saved by torch.save, a .safetensors file, or a "
                                                "specbuild checkpoint")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a param or a dotted key")
    p.add_argument("--network", help="the network to compare with, in a spec of several")
    p.set_defaults(run=_check_weights)


def _check_weights(args) -> int:
    from ..compiler.compile import build_model, pick_network
    from ..compiler.weights import compare, read_state_dict
    from ..spec.validate import check
    checked = check(args.spec, overrides=parse_overrides(args.set))
    network = pick_network(checked, args.network)
    model = build_model(checked, network=network)
    report = compare(model, read_state_dict(args.file, network=network))
    print(report.render())
    return 0 if report.fits else 1
