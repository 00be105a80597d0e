"""The report of one run: what it trained, how it went, how good the model is, where it ran.

Built from the run folder's files alone (folder.py); a part whose file is missing (an
older run folder, a run stopped before its end) is a note saying why, never an error.
The spec is checked again to draw its summary table and graph, which needs no torch.
"""
from __future__ import annotations

import shlex

from ..compiler.render import node_count, spec_graph, to_svg
from ..compiler.summary import BYTES_PER_PARAM, human_bytes, summary
from ..errors import SpecError
from ..spec.loader import load_spec
from . import html
from .folder import RunFiles, epoch_of

MAX_SVG_NODES = 400            # a larger graph is unreadable as one picture; `specbuild graph` draws it
MAX_CLASS_ROWS = 100           # per-class rows shown; more classes show those with the most samples
HISTORY_SKIP = ("epoch",)
PER_CLASS = ("precision", "recall", "f1", "support")
# environment.json's keys, in the order and with the names a person reads them
ENVIRONMENT = (("started", "started"), ("command", "command"), ("specbuild", "specbuild"),
               ("python", "Python"), ("torch", "torch"), ("torchvision", "torchvision"), ("numpy", "numpy"),
               ("scikit-learn", "scikit-learn"), ("platform", "platform"), ("cpu", "CPU"), ("cpus", "CPU cores"),
               ("device", "device"), ("device_name", "device name"), ("cuda", "CUDA"), ("seed", "seed"),
               ("precision", "precision"), ("compile", "compile"), ("world_size", "workers"),
               ("threads", "torch threads"), ("resumed_at_epoch", "resumed at epoch"))


def render(run: RunFiles) -> str:
    spec, spec_error = _load_spec(run)
    data = spec.data if spec is not None else {}
    train = data.get("train") if isinstance(data.get("train"), dict) else {}
    name = str(data.get("name") or run.path.name)
    env = run.environment or {}
    subtitle = " · ".join(str(p) for p in (run.path, train.get("task"), env.get("started"), env.get("device_name")
                                          or env.get("device")) if p)
    page = html.Page(f"{name} — run report", subtitle)
    page.add("overview", "Overview", *_overview(run, train))
    page.add("curves", "Curves", *_curves(run))
    if train.get("task") == "gan" or run.sample_count:
        page.add("samples", "Samples", *_samples(run))
    objectives = _objectives(run.evaluation)
    if objectives:
        page.add("confusion", "Confusion matrix", *(_matrix(o, len(objectives) > 1) for o in objectives))
        page.add("per-class", "Per-class precision and recall", *(_per_class(o, len(objectives) > 1)
                                                                 for o in objectives))
    elif train.get("task") != "gan" and (run.evaluation is None or run.evaluation.get("outcome") == "stopped"):
        page.add("confusion", "Confusion matrix", html.note(_no_evaluation(run)))
    page.add("spec", "Spec", *_spec(run, data, spec_error))
    if spec is not None:
        page.add("summary", "Summary", *_summary(spec))
        page.add("graph", "Graph", _graph(spec, name))
    page.add("environment", "Environment", *_environment(env))
    return page.render()


def _load_spec(run: RunFiles):
    if run.spec_text is None:
        return None, "spec.yaml is missing, so the spec, its summary and its graph cannot be shown"
    try:
        return load_spec(run.path / "spec.yaml"), None
    except SpecError as error:
        return None, f"spec.yaml cannot be read: {error}"


def _overview(run: RunFiles, train: dict) -> list:
    parts = [html.note(p, bad=True) for p in run.problems]
    evaluation, history = run.evaluation or {}, run.history
    outcome, message = evaluation.get("outcome"), evaluation.get("message")
    if outcome == "stopped":
        parts.append(html.note(f"The run stopped before its end: {message}", bad=True))
    elif outcome == "early stop" and message:
        parts.append(html.note(message))
    if not history:
        parts.append(html.note("No epoch finished, so there are no metrics yet."))
        return parts
    last, planned = history[-1], evaluation.get("epochs") or train.get("epochs")
    best = evaluation.get("best")
    figures = [("epochs", f"{last.get('epoch', len(history))} of {planned}" if planned else last.get("epoch"))]
    if isinstance(best, dict) and best.get("metric"):
        figures.append((f"best {best['metric']} (epoch {best.get('epoch')})", best.get("value")))
    shown = [k for k in last if k.startswith("val_") and k.endswith("accuracy")][:2] + ["val_loss", "d_loss", "g_loss"]
    figures += [(k, last[k]) for k in shown if k in last][:3]
    parts.append(html.cards(figures))
    parts.append(html.para(f"The metrics of the last epoch ({last.get('epoch')}):", "muted"))
    rows = [(k, v) for k, v in last.items() if k not in HISTORY_SKIP]
    parts.append(html.table(["metric", "value"], rows, id="final-metrics"))
    return parts


def _curves(run: RunFiles) -> list:
    parts = []
    if run.curves is not None:
        parts.append(html.png(run.curves, "training curves", id="curves"))
    elif run.history:
        parts.append(html.note("curves.png is missing from the run folder."))
    if not run.history:
        parts.append(html.note("metrics.jsonl holds no epoch yet."))
        return parts
    columns = list(dict.fromkeys(k for row in run.history for k in row))
    rows = [[row.get(k) for k in columns] for row in run.history]
    parts.append(html.h3("Every epoch"))
    parts.append(f'<div class="scroll tall">{html.table(columns, rows, id="history")}</div>')
    return parts


def _samples(run: RunFiles) -> list:
    if not run.samples:
        return [html.note("No sample grid was saved yet (samples/ holds one per finished epoch).")]
    figures = []
    for i, (name, data) in enumerate(run.samples):
        which = "last" if i == len(run.samples) - 1 else "first"
        figures.append(html.figure(html.png(data, f"generated samples, {name}", id=f"samples-{which}", cls="grid"),
                                   f"epoch {epoch_of(name)}"))
    return [html.para(f"Samples from fixed noise after the first and the last epoch; samples/ holds all "
                      f"{run.sample_count}.", "muted"), "".join(figures)]


def _objectives(evaluation: dict | None) -> list:
    """evaluation.json's objectives, each figure kept only where it is well formed: a file edited
    by hand (or written by another version) costs a figure a note, never the page."""
    found = (evaluation or {}).get("objectives")
    out = []
    for objective in found if isinstance(found, list) else []:
        if not isinstance(objective, dict):
            continue
        objective = dict(objective)
        classes = objective.get("classes")
        count = len(classes) if isinstance(classes, list) else -1
        matrix = objective.get("confusion")
        if not (isinstance(matrix, list) and len(matrix) == count and all(_numbers(row, count) for row in matrix)):
            objective.pop("confusion", None)
        per = objective.get("per_class")
        if not (isinstance(per, dict) and all(_numbers(per.get(k), count) for k in PER_CLASS)):
            objective.pop("per_class", None)
        out.append(objective)
    return out


def _numbers(values, count: int) -> bool:
    return isinstance(values, list) and len(values) == count and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _title(objective: dict, several: bool) -> str:
    head = f"{objective.get('on')} against {objective.get('target')}"
    return html.h3(head) if several else html.para(head, "muted")


def _matrix(objective: dict, several: bool) -> str:
    matrix, classes = objective.get("confusion"), [str(c) for c in objective.get("classes") or []]
    samples = objective.get("samples")
    intro = f"{html.number(samples)} held-out samples" + (
        f", accuracy {html.number(objective['accuracy'])}" if isinstance(objective.get("accuracy"), float) else "") \
        + f", after epoch {objective.get('epoch')}" * bool(objective.get("epoch"))
    if not matrix:
        return _title(objective, several) + html.note(objective.get("note") or "No confusion matrix was recorded.")
    head = '<th class="corner">true ↓ predicted →</th>' + "".join(html.cell(c, tag="th") for c in classes)
    rows = []
    for label, counts in zip(classes, matrix):
        total = sum(counts) or 1
        cells = "".join(html.cell(n, style=_shade(n / total), title=f"{n / total:.1%} of true {label}")
                        for n in counts)
        rows.append(f"<tr>{html.cell(label, tag='th')}{cells}</tr>")
    table = (f'<table{html.attrs(id="confusion-" + str(objective.get("name")), cls="matrix")}>'
             f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
    return _title(objective, several) + html.para(intro + "; rows: the true class, shaded by its share.", "muted") \
        + f'<div class="scroll">{table}</div>'


def _shade(share: float) -> str:
    return f"background: rgba(31, 90, 147, {0.08 + 0.8 * share:.2f}); color: {'#fff' if share > 0.5 else '#1d2330'}"


def _per_class(objective: dict, several: bool) -> str:
    per, classes = objective.get("per_class"), [str(c) for c in objective.get("classes") or []]
    keys = PER_CLASS
    if not per or not classes:
        return _title(objective, several) + html.note(objective.get("note") or "No per-class figures were recorded.")
    rows = [[c, *(per[k][i] for k in keys)] for i, c in enumerate(classes)]
    shown = rows if len(rows) <= MAX_CLASS_ROWS else sorted(rows, key=lambda r: -r[4])[:MAX_CLASS_ROWS]
    total = sum(per["support"]) or 1
    averages = [["macro average", *(sum(per[k]) / len(classes) for k in keys[:3]), total],
                ["weighted average", *(sum(v * s for v, s in zip(per[k], per["support"])) / total for k in keys[:3]),
                 total]]
    note = "" if shown is rows else \
        html.note(f"{len(rows)} classes: the {MAX_CLASS_ROWS} with the most samples are shown.")
    table = html.table(["class", *keys], shown + averages, id=f"per-class-{objective.get('name')}", total_rows=2)
    return _title(objective, several) + note + f'<div class="scroll tall">{table}</div>'


def _no_evaluation(run: RunFiles) -> str:
    if run.evaluation is None:
        return ("evaluation.json is missing: the run folder was written before runs recorded it, or the run is "
                "still going. `specbuild evaluate RUN/last.pt` gives the held-out metrics.")
    return "The run stopped before its end, so its model was not evaluated class by class."


def _spec(run: RunFiles, data: dict, error: str | None) -> list:
    parts = [html.note(error, bad=True)] if error else []
    doc = data.get("doc")
    if doc:
        parts.append(html.para(str(doc).strip(), "doc"))
    if run.spec_text is not None:
        parts.append(html.para("spec.yaml, as the run used it (overrides applied):", "muted"))
        parts.append(html.pre(run.spec_text))
    return parts


def _summary(spec) -> list:
    try:
        nets = summary(spec)
    except SpecError as error:
        return [html.note(f"The spec no longer checks, so it cannot be summarised: {error}", bad=True)]
    parts = []
    for net in nets:
        inputs = ", ".join(f"{k} {v}" for k, v in net.inputs.items())
        if len(nets) > 1:
            parts.append(html.h3(f"network {net.name}"))
        parts.append(html.para(f"inputs: {inputs}", "muted"))
        rows = [["\u00a0\u00a0" * r.depth + r.name, r.type, ", ".join(r.inputs), r.output, r.params] for r in net.rows]
        rows.append(["total", "", "", "", net.params])
        table = html.table(["node", "type", "inputs", "output shape", "params"], rows, id=f"summary-{net.name}",
                           total_rows=1)
        parts.append(f'<div class="scroll">{table}</div>')
        parts.append(html.para(f"{net.params:,} parameters, {human_bytes(net.params * BYTES_PER_PARAM)} as "
                               "float32.", "muted"))
    return parts


def _graph(spec, name: str) -> str:
    try:
        drawing = spec_graph(spec)
    except SpecError as error:
        return html.note(f"The spec no longer checks, so its graph cannot be drawn: {error}", bad=True)
    count = node_count(drawing)
    if count > MAX_SVG_NODES:
        return html.note(f"The graph has {count:,} nodes, too many for one picture; `specbuild graph` writes it "
                         "as Mermaid or DOT.")
    return f'<div class="scroll">{to_svg(drawing, title=f"{name} graph")}</div>'


def _environment(env: dict) -> list:
    if not env:
        return [html.note("environment.json is missing: the run folder was written before runs recorded "
                          "where they ran.")]
    pairs = [(label, _plain(env[key])) for key, label in ENVIRONMENT if env.get(key) not in (None, "")]
    data = env.get("data")
    if isinstance(data, dict):
        pairs.append(("data set", f"{data.get('name')}: {html.number(data.get('train'))} training samples, "
                                  f"{html.number(data.get('held_out'))} held out"))
    return [html.key_values(pairs, id="environment")]


def _plain(value):
    if isinstance(value, list):          # the command line
        return shlex.join(str(v) for v in value)
    if isinstance(value, bool):
        return "on" if value else "off"
    return value if isinstance(value, (int, float)) else str(value)

