"""specbuild: PyTorch models written as data.

    import specbuild
    specbuild.validate("specs/cnn.yaml")          # warnings, or SpecError listing every problem
    model = specbuild.build_model("specs/cnn.yaml")

Importing specbuild does not import torch; `build_model`, `summary` and `train`
import it when first used.
"""
from .errors import Problem, SpecError
from .loader import Spec, load_spec
from .registry import register_layer, unregister_layer
from .validate import validate

__version__ = "0.1.0"
__all__ = ["Problem", "Spec", "SpecError", "build_model", "load_spec", "register_layer", "summary",
           "train", "unregister_layer", "validate"]

_LAZY = {"build_model": "compile", "summary": "summary", "train": "trainer"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'specbuild' has no attribute {name!r}")
