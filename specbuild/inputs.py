"""A model's inputs: one description, read once from the spec, used by every stage.

`inputs: {x: [1, 28, 28]}` or `inputs: {ids: {shape: [10], dtype: long}}` becomes one
`Input` per name: the graph checks it, shape inference starts from it, the data loader
fits data to it, and predict casts files to it.  DTYPES is the one table of the dtype
names a spec may use and the torch dtype each stands for.  Nothing here imports torch
until a torch dtype is asked for.
"""
from __future__ import annotations

from dataclasses import dataclass

# spec dtype name -> torch.<attribute>; the schema's dtype enum is this table's keys
DTYPES = {"float32": "float32", "float": "float32", "float64": "float64", "double": "float64",
          "float16": "float16", "half": "float16", "bfloat16": "bfloat16", "long": "int64",
          "int64": "int64", "int32": "int32", "int": "int64", "bool": "bool"}
INTEGER_DTYPES = {name for name, torch_name in DTYPES.items() if torch_name.startswith("int")}


@dataclass(frozen=True)
class Input:
    name: str
    shape: tuple | None          # one sample's shape, no batch dim; None for a block's inputs
    dtype: str | None = None     # a key of DTYPES as the spec wrote it; None when the spec gives none
    path: tuple = ()             # where in the spec, e.g. ("inputs", "x")

    @property
    def is_integer(self) -> bool:
        return self.dtype in INTEGER_DTYPES

    @property
    def dtype_name(self) -> str:
        """torch's name of the dtype shape inference assumes: the declared one, else float32."""
        return DTYPES.get(self.dtype, "float32") if self.dtype is not None else "float32"

    @property
    def shown_dtype(self) -> str:
        """The dtype as the spec reads it: float32 unless it says otherwise."""
        return self.dtype or "float32"

    def torch_dtype(self):
        """The torch dtype inputs are cast to: the one shape inference assumed (dtype_name), so
        data fed to the model is what validation checked the layers against."""
        import torch
        return getattr(torch, self.dtype_name)


def parse_input(name: str, value, path: tuple = ()) -> Input:
    """One entry of a spec's `inputs:` (a shape list, or {shape, dtype}) as an Input.
    The schema has checked its form; a shape that is not a list is kept as None."""
    shape, dtype = (value.get("shape"), value.get("dtype")) if isinstance(value, dict) else (value, None)
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = [shape]
    return Input(str(name), tuple(shape) if isinstance(shape, (list, tuple)) else None,
                 str(dtype) if dtype is not None else None, path)
