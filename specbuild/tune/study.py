"""The search: `tune()` and `specbuild tune`.

The spec is checked whole, its `tune:` section and every search-space value included, before
any trial starts.  The study lives in a database (SQLite in the tune folder unless --storage
names another), so the number of trials is counted over everyone's: a resumed study, or a
second machine on the same database, runs only the trials still missing.  A trial left
RUNNING by a process that is gone (a killed search) is failed when the study is next opened,
so it never counts as running for ever.  Whatever ends the search (its trials done, the
timeout, Ctrl-C), the outputs are written from the database.
"""
from __future__ import annotations

import dataclasses
import os
import socket
import sys
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from ..errors import SpecError
from ..spec.loader import load_spec
from ..spec.tune_checks import EXAMPLE, TuneConfig, parse_tune, trial_overrides, without_tune
from ..spec.validate import check
from ..training.session import TrainingStopped
from ..training.trainer import command_line_overrides
from . import outputs
from .folder import SPEC, TuneFolder, open_storage, redact
from .space import make_pruner, make_sampler, queue_grid
from .trial import MetricMissing, TrialFailed, TrialRunner, format_value, trial_line

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
OPTIONS = ("data", "data_root", "limit", "epochs", "device")      # the trainer's options every trial gets
STOPPED = "the process running it stopped"


@dataclass
class TuneResult:
    study: object                 # the optuna.Study
    folder: str                   # the tune folder
    summary: dict                 # what trials.json holds
    best_spec: str | None         # best.yaml, when a trial completed


def tune(spec=None, *, trials=None, timeout=None, storage=None, study=None, out=None, resume=None,
         overrides=None, limit=None, data=None, epochs=None, data_root=None, device=None,
         progress=None, results=None) -> TuneResult:
    """Run the search the spec's `tune:` section describes (docs/tuning.md).  `trials` and `timeout`
    override the section's; `overrides`, `data`, `limit`, `epochs`, ... go to every trial's run.
    With `resume` (a tune folder) the study continues with its recorded spec and options.  One line
    per trial goes to `progress` (stderr), the trials table to `results` (stdout).  Ctrl-C stops
    the search with TrainingStopped (exit_code 130), after writing the outputs."""
    progress, results = progress or sys.stderr, results or sys.stdout
    optuna.logging.set_verbosity(optuna.logging.ERROR)       # our lines say what happens
    given = {"data": data, "data_root": data_root, "limit": limit, "epochs": epochs, "device": device}
    if resume is not None:
        if spec is not None:
            raise SpecError("--resume continues a study with the spec it recorded (tune.yaml); give no spec",
                            hint=f"specbuild tune --resume {resume} (add --trials N to run more trials)")
        folder = TuneFolder.existing(resume)
        settings = folder.read_settings()
        spec = str(folder.path / SPEC)
        recorded = settings.get("options") or {}
        options = {k: given[k] if given[k] is not None else recorded.get(k) for k in OPTIONS}
        options["overrides"] = {**(recorded.get("overrides") or {}), **trial_overrides(overrides)}
        trials = trials if trials is not None else settings.get("trials")        # as the study was started
        timeout = timeout if timeout is not None else settings.get("timeout")
        study = study or settings["study"]
        storage = storage or _recorded_storage(settings, folder, resume)
    else:
        if spec is None:
            raise SpecError("tune needs a spec with a tune: section, or --resume with a tune folder",
                            hint="e.g. specbuild tune model.yaml, or specbuild tune --resume runs/model-tune-...")
        folder, options = None, {**given, "overrides": trial_overrides(overrides)}
    loaded = load_spec(spec)
    if "tune" not in loaded.data:
        raise SpecError("the spec has no tune: section, so there is nothing to search", file=loaded.file,
                        hint=EXAMPLE)
    trial_options = {k: options[k] for k in ("data", "limit", "epochs")}
    checked = check(loaded, overrides={**(overrides or {}), **options["overrides"], **command_line_overrides(
        loaded.data, device=options["device"], **trial_options)})
    config = _with_command_line(parse_tune(checked.data["tune"], loaded, []), trials, timeout, progress)
    name = study or loaded.data["name"]
    opened = None if storage is None else _open_study(storage, name, config, checked.data["tune"])
    if folder is None:          # made once the study is known to fit, so a refusal leaves no folder
        folder = TuneFolder.new(out, loaded.data["name"])
        folder.write_spec(loaded)
        folder.write_settings({"study": name, "storage": None if storage is None else redact(storage),
                               "password_removed": storage is not None and redact(storage) != storage,
                               "trials": trials, "timeout": timeout, "options": options})
    url = storage or folder.default_storage()
    the_study, store = opened or _open_study(url, name, config, checked.data["tune"])
    stopped = _fail_abandoned(the_study, store, resuming=resume is not None)
    return _search(the_study, config, loaded, folder, options, redact(url), stopped, progress, results)


def _recorded_storage(settings: dict, folder: TuneFolder, resume) -> str:
    if settings.get("storage") is None:
        return folder.default_storage()
    if settings.get("password_removed"):
        raise SpecError(f"the study of {resume} is in {settings['storage']}, whose password is not kept",
                        hint="give --storage with the full URL again")
    return settings["storage"]


def _with_command_line(config: TuneConfig, trials, timeout, progress) -> TuneConfig:
    changes = {k: v for k, v in (("trials", trials), ("timeout", timeout)) if v is not None}
    if config.sampler == "grid" and changes.get("trials", 0) > config.grid_size:
        print(f"the grid has {config.grid_size} combinations: running {config.grid_size} trials, "
              f"not {changes['trials']}", file=progress)
        changes["trials"] = config.grid_size
    return dataclasses.replace(config, **changes)


def _open_study(url: str, name: str, config: TuneConfig, section: dict):
    """The study `name` in the database at `url`: made (with the grid queued) or, when it is
    there, joined, if it searches the same space for the same metric."""
    store = open_storage(url)
    sampler, pruner = make_sampler(config), make_pruner(config)
    try:
        study = optuna.create_study(storage=store, study_name=name, direction=config.direction,
                                    sampler=sampler, pruner=pruner)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=store, sampler=sampler, pruner=pruner)
        _same_search(study, config, section, url)
        study.sampler = make_sampler(config, trials_before=len(study.get_trials(deepcopy=False)))
    else:
        study.set_user_attr("tune", section)
        queue_grid(study, config)
    return study, store


def _same_search(study, config: TuneConfig, section: dict, url: str) -> None:
    recorded = study.user_attrs.get("tune") or {}
    mine = {"metric": config.metric, "direction": config.direction, "space": section.get("space"),
            "sampler": section.get("sampler", "tpe")}
    theirs = {"metric": recorded.get("metric"), "direction": study.direction.name.lower(),
              "space": recorded.get("space"), "sampler": recorded.get("sampler", "tpe")}
    differs = [key for key in mine if mine[key] != theirs[key]]
    if differs:
        raise SpecError(f"the study {study.study_name!r} in {redact(url)} was started with another tune section "
                        f"(its {differs[0]} differs)", path=f"tune.{differs[0]}",
                        hint="give --study with a new name to start another study, or tune the spec it was made of")


def _fail_abandoned(study, store, *, resuming: bool) -> int:
    """Fail the trials left RUNNING by a process of this machine that is gone (and, on --resume,
    those whose process never said where it ran); another machine's are its heartbeat's."""
    host, count = socket.gethostname(), 0
    study_id = store.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = trial.user_attrs
        if (attrs.get("host") == host and not _alive(attrs.get("pid"))) or (resuming and "host" not in attrs):
            trial_id = store.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            store.set_trial_user_attr(trial_id, "error", STOPPED)
            store.set_trial_state_values(trial_id, TrialState.FAIL)
            count += 1
    return count


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:        # someone else's process: alive
        return True
    return True


def _search(study, config: TuneConfig, spec, folder: TuneFolder, options: dict, storage: str, stopped: int,
            progress, results) -> TuneResult:
    finished = len(study.get_trials(deepcopy=False, states=FINISHED))
    remaining = config.trials - finished
    note = f", {stopped} left running by a stopped process marked failed" if stopped else ""
    print(f"study {study.study_name}: {finished} of {config.trials} trials finished{note}; "
          f"trials run in {folder.path / 'trials'}", file=progress, flush=True)
    runner = TrialRunner(without_tune(spec), config, folder, options)

    def after_trial(study, trial):
        print(trial_line(trial, config), file=progress, flush=True)
        outputs.write_summary(study, folder, config, storage, {"history": None, "importances": None}, [])

    interrupted, failure = False, None
    try:
        if remaining > 0:
            study.optimize(runner, n_trials=remaining, timeout=config.timeout, catch=(TrialFailed,),
                           callbacks=[optuna.study.MaxTrialsCallback(config.trials, states=FINISHED), after_trial],
                           gc_after_trial=True)
    except KeyboardInterrupt:
        interrupted = True
    except MetricMissing as missing:
        failure = missing.error
    result = _finish(study, config, spec, folder, options, storage, results)
    if interrupted:
        done = len(study.get_trials(deepcopy=False, states=FINISHED))
        raise TrainingStopped(f"interrupted with {done} of {config.trials} trials finished; the study is kept "
                              f"(continue it with: specbuild tune --resume {folder.path})", exit_code=130)
    if failure is not None:
        raise failure
    return result


def _finish(study, config: TuneConfig, spec, folder: TuneFolder, options: dict, storage: str, results) -> TuneResult:
    notes: list[str] = []
    plots = outputs.write_plots(study, folder, notes)
    summary = outputs.write_summary(study, folder, config, storage, plots, notes)
    best_spec = outputs.write_best(spec, summary, folder, options["overrides"], _options_text(options))
    known = len(notes)
    outputs.write_report_html(folder, notes)      # it reads trials.json, so it comes after it
    if len(notes) > known:                         # why it could not be written
        summary = outputs.write_summary(study, folder, config, storage, plots, notes)
    print(outputs.table(summary), file=results)
    best = summary["best"]
    if best is not None:
        values = ", ".join(f"{k}={format_value(v)}" for k, v in best["params"].items())
        print(f"best: trial {best['number']}, {config.metric} {best['value']:.4f} [{values}]", file=results)
        print(f"best spec: {best_spec}", file=results)
    else:
        print("no trial completed, so there is no best.yaml", file=results)
    print(f"tune folder: {folder.path}", file=results, flush=True)
    return TuneResult(study, str(folder.path), summary, best_spec)


def _options_text(options: dict) -> str:
    """The trainer's options the trials ran with, as a command line would give them."""
    flags = [f"--{k.replace('_', '-')} {options[k]}" for k in OPTIONS if options.get(k) is not None]
    return " ".join(flags)
