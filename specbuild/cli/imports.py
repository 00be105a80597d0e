"""`specbuild import MODULE.py:Class --input-shape x=3,224,224 -o spec.yaml`: a module as a spec.

The module's file is imported (it is the user's own code, run as Python runs it), the class
built with `--args` (JSON keyword arguments), traced with example inputs of the given
shapes, and written as a spec that validates and whose model loads the module's
state_dict strictly.  `specbuild import model.pt2` reads an ExportedProgram instead
(export/from_exported.py): it knows its inputs' shapes, so no --input-shape.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import sys

from ..errors import SpecError, did_you_mean
from ..inputs import DTYPES, Input

EPILOG = ("exit status: 0 written, 1 a problem with the input (a file, a class, a module that cannot become a "
          "spec: reported, no traceback), 2 usage, 3 a bug in specbuild")
EXAMPLE_BATCH = 2          # the example inputs the module is traced with (a batch of one would be special)
_SHAPE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=\[?([0-9][0-9, ]*)\]?(?::([a-z0-9]+))?$")


def add_import_command(sub) -> None:
    p = sub.add_parser("import", help="write an nn.Module (MODULE.py:Class, traced with torch.fx) or an "
                       "ExportedProgram (FILE.pt2) as a spec", epilog=EPILOG)
    p.add_argument("source", metavar="MODULE.py:Class|FILE.pt2",
                   help="a Python file and the nn.Module class in it, or a file written by torch.export.save")
    p.add_argument("--args", default="{}", metavar="JSON", help="the class's keyword arguments, as a JSON object")
    p.add_argument("--input-shape", action="append", metavar="NAME=SHAPE[:DTYPE]",
                   help="one sample's shape of a forward input (no batch), e.g. x=3,224,224 or ids=16:long; "
                   "required for MODULE.py:Class, not taken for a .pt2 (it records its inputs)")
    p.add_argument("-o", "--out", metavar="FILE", help="where to write the spec (default: print it)")
    p.add_argument("--name", help="the spec's name (default: the class's, lower-cased)")
    p.set_defaults(run=_import, import_parser=p)


def _import(args) -> int:
    from ..spec.spec_yaml import spec_yaml
    from ..spec.validate import check
    from .train import emit
    doc = f"Imported by `specbuild import` from {args.source}."
    if args.source.endswith(".pt2"):
        from ..export.from_exported import spec_from_exported
        if args.input_shape or args.args != "{}":
            args.import_parser.error("a .pt2 program records its inputs and was built already: "
                                     "--input-shape and --args are for MODULE.py:Class")
        spec = spec_from_exported(args.source, name=args.name, doc=doc)
    else:
        from ..export.formats import example_tensors
        from ..export.from_module import spec_from_module
        if not args.input_shape:
            args.import_parser.error(f"the following arguments are required for {args.source}: --input-shape "
                                     "(e.g. --input-shape x=3,224,224); only a .pt2 source goes without")
        module = _instance(args.source, args.args)
        inputs = [_input(text) for text in args.input_shape]
        examples = dict(zip((i.name for i in inputs), example_tensors(inputs, EXAMPLE_BATCH)))
        spec = spec_from_module(module, examples, name=args.name, doc=doc)
    text = spec_yaml(spec)
    check(text)                                # what it writes validates
    emit(text, args.out)
    return 0


def _input(text: str) -> Input:
    """`x=3,224,224` or `ids=16:long` as an Input (one sample's shape, and its dtype)."""
    match = _SHAPE.match(text.strip())
    if not match:
        raise SpecError(f"--input-shape {text!r}: write NAME=SIZES[:DTYPE]", hint="e.g. x=3,224,224 or ids=16:long")
    name, sizes, dtype = match.group(1), match.group(2), match.group(3)
    if dtype is not None and dtype not in DTYPES:
        raise SpecError(f"--input-shape {text!r}: unknown dtype {dtype!r}",
                        hint=did_you_mean(dtype, DTYPES) or "one of: " + ", ".join(DTYPES))
    return Input(name, tuple(int(s) for s in sizes.replace(" ", "").split(",") if s), dtype)


def _instance(source: str, arguments: str):
    path, _, class_name = source.rpartition(":")
    if not path or not class_name:
        raise SpecError(f"{source}: write MODULE.py:Class", hint="e.g. models.py:ResNet")
    if not os.path.isfile(path):
        raise SpecError(f"{path}: no such file", hint="give the path of the Python file defining the class")
    try:
        keywords = json.loads(arguments)
    except json.JSONDecodeError as error:
        raise SpecError(f"--args is not JSON: {error.msg}", hint='e.g. --args \'{"width": 64}\'') from None
    if not isinstance(keywords, dict):
        raise SpecError("--args must be a JSON object of keyword arguments", hint='e.g. --args \'{"width": 64}\'')
    folder = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, folder)                  # the file's own imports of its neighbours
    try:
        spec = importlib.util.spec_from_file_location(f"specbuild_import_{class_name}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module          # inspect finds its source, for errors naming a line
        spec.loader.exec_module(module)
        cls = getattr(module, class_name, None)
        if cls is None:
            found = [n for n, v in vars(module).items() if isinstance(v, type) and hasattr(v, "forward")]
            raise SpecError(f"{path} has no class {class_name!r}", hint="its modules: " + (", ".join(found) or "none"))
        return cls(**keywords)
    except SpecError:
        raise
    except Exception as error:                 # the user's code failed: say where, without our traceback
        raise SpecError(f"{source}: building it failed: {type(error).__name__}: {error}",
                        hint="check --args and that the file runs on its own") from None
    finally:
        sys.path.remove(folder)
