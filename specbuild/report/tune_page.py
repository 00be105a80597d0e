"""The report of a tuning study: its best trial, every trial, and the study's plots.

Read from the study folder's trials.json (written by `specbuild tune`), whose shape is:
{"study", "storage", "metric", "direction", "best": {"number", "value", "params", "run"} or
null, "trials": [{"number", "state", "value", "params", "run", "error", "epochs", "seconds"}],
"plots": {"history": file or null, "importances": file or null}, "notes": [...]}.
Each trial's run folder holds its own report; the page links to it by a relative path,
so the study's folder can be moved or copied whole.
"""
from __future__ import annotations

import os
from pathlib import Path

from . import html
from .folder import TuneFiles

PLOTS = (("history", "Optimisation history"), ("importances", "Parameter importances"))


def render(tune: TuneFiles, out_dir: Path) -> str:
    study = tune.study
    name = str(study.get("study") or tune.path.name)
    trials = [t for t in study.get("trials") or [] if isinstance(t, dict)]
    subtitle = " · ".join(str(p) for p in (tune.path, _goal(study), f"{len(trials)} trials") if p)
    page = html.Page(f"{name} — study report", subtitle)
    page.add("overview", "Overview", *_overview(tune, trials, out_dir))
    page.add("trials", "Trials", *_trials(tune, trials, out_dir))
    page.add("plots", "Plots", *_plots(tune))
    return page.render()


def _goal(study: dict) -> str:
    metric, direction = study.get("metric"), study.get("direction")
    return f"{direction} {metric}" if metric and direction else str(metric or "")


def _overview(tune: TuneFiles, trials: list, out_dir: Path) -> list:
    study = tune.study
    parts = [html.note(p, bad=True) for p in tune.problems]
    parts += [html.note(str(n)) for n in study.get("notes") or []]
    states = {}
    for trial in trials:
        states[str(trial.get("state"))] = states.get(str(trial.get("state")), 0) + 1
    pairs = [("study", study.get("study")), ("storage", study.get("storage")), ("metric", study.get("metric")),
             ("direction", study.get("direction")), ("trials", ", ".join(f"{n} {s.lower()}" for s, n in states.items())
                                                     or "none")]
    parts.append(html.key_values([(k, v) for k, v in pairs if v not in (None, "")], id="study"))
    best = study.get("best")
    if not isinstance(best, dict):
        parts.append(html.note("No trial has completed yet, so there is no best trial."))
        return parts
    parts.append(html.h3(f"Best trial: number {best.get('number')}"))
    parts.append(html.cards([(str(study.get("metric") or "value"), best.get("value"))]))
    params = best.get("params") if isinstance(best.get("params"), dict) else {}
    parts.append(html.key_values([(k, _value(v)) for k, v in params.items()], id="best-params"))
    link = _run_link(tune.path, best.get("run"), out_dir)
    if link:
        parts.append(f"<p>Its run: {link}</p>")
    return parts


def _trials(tune: TuneFiles, trials: list, out_dir: Path) -> list:
    if not trials:
        return [html.note("trials.json lists no trial yet.")]
    names = list(dict.fromkeys(k for t in trials if isinstance(t.get("params"), dict) for k in t["params"]))
    head = ["number", "state", str(tune.study.get("metric") or "value"), *names, "epochs", "seconds", "run", "error"]
    rows = []
    for trial in sorted(trials, key=lambda t: t.get("number") if isinstance(t.get("number"), int) else -1):
        params = trial.get("params") if isinstance(trial.get("params"), dict) else {}
        cells = [trial.get("number"), trial.get("state"), trial.get("value"), *(_value(params.get(k)) for k in names),
                 trial.get("epochs"), trial.get("seconds")]
        link = _run_link(tune.path, trial.get("run"), out_dir) or html.text(trial.get("run") or "")
        rows.append("<tr>" + "".join(html.cell(v) for v in cells) + f"<td>{link}</td>"
                    + html.cell(trial.get("error") or "") + "</tr>")
    table = (f'<table id="trials"><thead><tr>{"".join(html.cell(h, tag="th") for h in head)}</tr></thead>'
             f"<tbody>{''.join(rows)}</tbody></table>")
    return [f'<div class="scroll tall">{table}</div>']


def _plots(tune: TuneFiles) -> list:
    parts = []
    for key, title in PLOTS:
        if key in tune.plots:
            parts.append(html.h3(title) + html.png(tune.plots[key], title, id=f"plot-{key}"))
    if not parts:
        parts.append(html.note("The study has no plots yet: they need completed trials (importances need two "
                               "parameters or more and several trials)."))
    return parts


def _run_link(folder: Path, run, out_dir: Path) -> str:
    """A relative link to a trial's report when it is there, its folder otherwise; '' without a run."""
    if not isinstance(run, str) or not run:
        return ""
    target = folder / run
    page = target / "report.html"
    if not target.is_dir():
        return ""
    href = Path(os.path.relpath(page if page.exists() else target, out_dir)).as_posix()
    href = href if href.startswith(".") else "./" + href      # never read as a scheme (a:b)
    return html.link(href, run + ("/report.html" if page.exists() else "/"))


def _value(value):
    """A parameter's value for a cell as the study chose it (0.003, not 0.0030)."""
    if isinstance(value, float):
        return f"{value:g}"
    return "" if value is None else value if isinstance(value, int) and not isinstance(value, bool) else str(value)
