"""What a study leaves in its tune folder: trials.json and trials.csv (every trial), the
trials table printed at the end, best.yaml (the spec with the best trial's values), the
optimisation history and parameter importance plots, and report.html.

trials.json is what specbuild/report/ reads:
{"study", "storage", "metric", "direction", "best": {"number", "value", "params", "run"} | null,
 "trials": [{"number", "state", "value", "params", "run", "error", "epochs", "seconds"}],
 "plots": {"history", "importances"} (file names or null), "notes": [why a plot or file is missing]}
"""
from __future__ import annotations

import csv
import io
import json
import math
import warnings

from ..atomic import write_text_atomically
from ..spec.spec_yaml import spec_yaml
from ..spec.tune_checks import TuneConfig, without_tune
from ..spec.variables import apply_overrides
from .trial import format_value

STALE = "the process running it stopped (no heartbeat)"


def trial_rows(study, folder) -> list[dict]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        run = t.user_attrs.get("run")
        error = t.user_attrs.get("error")
        if t.state.name == "FAIL" and error is None:
            error = STALE                           # failed by another process's heartbeat check
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() \
            if t.datetime_complete and t.datetime_start else None
        rows.append({"number": t.number, "state": t.state.name, "value": _number(t.value), "params": t.params,
                     "run": run if run and (folder.path / run).is_dir() else None, "error": error,
                     "epochs": len(t.intermediate_values), "seconds": None if seconds is None else round(seconds, 3)})
    return rows


def _number(value):
    return value if value is None or math.isfinite(value) else None


def best_row(rows: list[dict], config: TuneConfig) -> dict | None:
    done = [r for r in rows if r["state"] == "COMPLETE" and r["value"] is not None]
    if not done:
        return None
    pick = max if config.direction == "maximize" else min
    best = pick(done, key=lambda r: r["value"])
    return {k: best[k] for k in ("number", "value", "params", "run")}


def write_summary(study, folder, config: TuneConfig, storage: str, plots: dict, notes: list[str]) -> dict:
    """trials.json and trials.csv, written whole after every trial (the report and a watcher read them)."""
    rows = trial_rows(study, folder)
    summary = {"study": study.study_name, "storage": storage, "metric": config.metric,
               "direction": config.direction, "best": best_row(rows, config), "trials": rows,
               "plots": plots, "notes": notes}
    write_text_atomically(folder.path / "trials.json", json.dumps(summary, indent=1) + "\n")
    write_text_atomically(folder.path / "trials.csv", _csv(rows, config))
    return summary


def _csv(rows: list[dict], config: TuneConfig) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r["params"]))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["number", "state", config.metric, *keys, "epochs", "seconds", "run", "error"])
    for r in rows:
        writer.writerow([r["number"], r["state"], "" if r["value"] is None else r["value"],
                         *("" if r["params"].get(k) is None else r["params"][k] for k in keys),
                         r["epochs"], "" if r["seconds"] is None else r["seconds"], r["run"] or "", r["error"] or ""])
    return out.getvalue()


def table(summary: dict) -> str:
    """The trials as a table for the terminal: number, state, value, values, error."""
    head = ["trial", "state", summary["metric"], "params", "error"]
    lines = [[str(r["number"]), r["state"], "-" if r["value"] is None else f"{r['value']:.4f}",
              ", ".join(f"{k}={format_value(v)}" for k, v in r["params"].items()) or "-",
              (r["error"] or "").splitlines()[0][:90] if r["error"] else ""] for r in summary["trials"]]
    widths = [max(len(row[i]) for row in [head, *lines]) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [head, *lines])


def write_best(spec, summary: dict, folder, overrides: dict, options_text: str) -> str | None:
    """best.yaml: the spec as written (params and ${...} kept) with the best trial's values, without
    `tune:`, trainable as it is; its first line says where it came from."""
    best = summary["best"]
    if best is None:
        return None
    data = apply_overrides(without_tune(spec).data, {**overrides, **best["params"]})
    source = f" ({best['run']})" if best["run"] else ""
    ran = f"; its runs had {options_text}" if options_text else ""
    head = (f"# best trial of study {summary['study']}: trial {best['number']}{source}, "
            f"{summary['metric']} {best['value']:.4f} ({summary['direction']}){ran}\n")
    path = folder.path / "best.yaml"
    write_text_atomically(path, head + spec_yaml(data))
    return str(path)


def write_plots(study, folder, notes: list[str]) -> dict:
    """history.png and importances.png; a plot that cannot be drawn is left out, and `notes` says why."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots_of

    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    plots = {"history": None, "importances": None}
    if not done:
        notes.append("no optimisation history plot: no trial completed")
        return plots
    varying = [k for k in done[0].params if len({repr(t.params.get(k)) for t in done}) > 1]
    why = (f"parameter importances need 2 completed trials, and {len(done)} completed" if len(done) < 2 else
           "no parameter importances: no parameter took two values among the completed trials" if not varying
           else None)
    draw = [("history", plots_of.plot_optimization_history)]
    if why:
        notes.append(why)
    else:
        draw.append(("importances", plots_of.plot_param_importances))
    for name, plot in draw:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")      # Optuna marks its matplotlib plots experimental
                axes = plot(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as error:
            notes.append(f"no {name} plot: {error}")
            continue
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        figure.savefig(folder.path / f"{name}.png", dpi=100, bbox_inches="tight")
        plt.close(figure)
        plots[name] = f"{name}.png"
    return plots


def write_report_html(folder, notes: list[str]) -> str | None:
    """report.html, by specbuild/report/ (which reads trials.json); a failure there loses no trial."""
    try:
        from ..report.write import write_report
    except ImportError as error:
        notes.append(f"no report.html: {error}")
        return None
    try:
        return str(write_report(str(folder.path)))
    except Exception as error:       # the study's results are written already: say so, and go on
        notes.append(f"no report.html: {type(error).__name__}: {error}")
        return None
