"""Models in and out of specbuild: a model as a file other tools run without specbuild, and a
hand-written module as a spec.

    import specbuild
    specbuild.export_model("specs/cnn.yaml", "onnx")              # -> Path("cnn.onnx"), fresh weights
    specbuild.export_model("runs/cnn/best.pt", "pt2", "cnn.pt2")  # the checkpoint's trained weights
    spec = specbuild.spec_from_module(module, {"x": example})      # `specbuild import`

`formats.py` holds the formats (`python`, `pt2`, `onnx`, `torchscript`), the example inputs and
the writing; `failures.py` turns torch's refusal to export into a SpecError naming the spec's
node; `python_code.py` (with python_classes, python_scope, python_format) writes the standalone
Python file.  `from_module.py` (with trace, module_args, merge) turns a module into
a spec; `from_exported.py` (with aten_ops) an ExportedProgram (`.pt2`), through the same merge.  The stage sits beside training/ (docs/architecture.md): it imports compiler/, spec/
and the ground floor.
"""
