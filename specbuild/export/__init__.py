"""Export a spec's model (or a trained checkpoint's) to a file other tools run without specbuild.

    from specbuild.export.formats import export
    export("specs/cnn.yaml", "onnx")                  # -> Path("cnn.onnx"), fresh weights
    export("runs/cnn/best.pt", "pt2", "cnn.pt2")      # the checkpoint's trained weights

`formats.py` holds the formats (`python`, `pt2`, `onnx`, `torchscript`), the example inputs
and the writing; `failures.py` turns torch's refusal to export into a SpecError naming the
spec's node; `python_code.py` writes the standalone Python file.  The stage sits beside
training/ (docs/architecture.md): it imports compiler/, spec/ and the ground floor.
"""
