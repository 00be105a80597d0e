"""specbuild: PyTorch models written as data.

    import specbuild
    specbuild.validate("specs/cnn.yaml")          # warnings, or SpecError listing every problem
    model = specbuild.build_model("specs/cnn.yaml")

Importing specbuild does not import torch; `build_model`, `build_models`, `summary` and
`train` import it when first used.  The package is a pipeline of stages, each a folder
importing only the stages below it (docs/architecture.md):

    errors, registry, resolve, inputs   the ground floor
    shapes/     per-type shape rules (pure Python)
    spec/       text -> checked spec
    compiler/   checked spec -> torch.fx GraphModule; summary; pictures
    data/       data sets as preloaded tensors
    report/     a run or tune folder as one self-contained report.html
    training/   the loops, objectives, optimizers, metrics, checkpoints, predict
    export/     a model as a Python file, pt2, ONNX or TorchScript; a module as a spec
    tune/       hyperparameter search: trials are runs, on Optuna
    cli/        the `specbuild` command
"""
from .errors import Problem, SpecError
from .registry import register_layer, unregister_layer
from .spec.loader import Spec, load_spec
from .spec.validate import validate

__version__ = "0.1.0"
__all__ = ["Problem", "Spec", "SpecError", "build_model", "build_models", "export_model", "load_spec", "register_layer",
           "spec_from_module", "summary", "train", "unregister_layer", "validate"]

# public name -> the module defining it, imported on first use (it imports torch)
_LAZY = {"build_model": "compiler.compile", "build_models": "compiler.compile", "summary": "compiler.summary",
         "train": "training.trainer", "spec_from_module": "export.from_module", "export_model": "export.formats"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value      # later look-ups find it directly
        return value
    raise AttributeError(f"module 'specbuild' has no attribute {name!r}")
