"""Run reports: one self-contained report.html of a run folder or a tune folder.

Reads the files training and tuning leave (spec.yaml, metrics.jsonl, curves.png,
samples/, environment.json, evaluation.json; trials.json for a study) and writes a
page that needs nothing beside it: images inline, CSS inline, no script.  What needs
the trained model (the confusion matrix) is computed by training at the end of a
run (training/run_facts.py) and read here from evaluation.json.
"""
