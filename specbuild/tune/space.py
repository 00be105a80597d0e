"""The search: Optuna's sampler and pruner for a `tune:` section, and each trial's values.

The grid is not Optuna's GridSampler, which visits its points in a shuffled order and can
only stop a study from inside `optimize`: instead every combination is put in the study's
queue when the study is made, in the order written (the last entry varying fastest), and
each trial, on any machine, takes the next one.
"""
from __future__ import annotations

import itertools

import optuna

from ..spec.tune_checks import Dimension, TuneConfig


def make_sampler(config: TuneConfig, trials_before: int = 0):
    """The sampler; a seeded one joining a study with trials already in it starts from the seed
    moved on by their number, so that a resumed study draws new values, not its first ones again."""
    options = dict(config.sampler_options)
    if options.get("seed") is not None:
        options["seed"] += trials_before
    if config.sampler == "tpe":
        return optuna.samplers.TPESampler(**options)
    return optuna.samplers.RandomSampler(seed=options.get("seed"))    # the grid's points come from the queue


def make_pruner(config: TuneConfig):
    options = dict(config.pruner_options)
    if config.pruner == "none":
        return optuna.pruners.NopPruner()
    if config.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(**options)
    if config.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(**options)
    return optuna.pruners.MedianPruner(**options)


def grid_points(config: TuneConfig) -> list[dict]:
    """Every combination of the choices, in the order written."""
    keys = [d.key for d in config.space]
    return [dict(zip(keys, values)) for values in itertools.product(*(d.choices for d in config.space))]


def queue_grid(study, config: TuneConfig) -> None:
    """Put the grid in the new study's queue (only its maker does, so machines never queue it twice)."""
    if config.sampler == "grid":
        for point in grid_points(config):
            study.enqueue_trial(point)


def suggest(trial, config: TuneConfig) -> dict:
    """The trial's value of every dimension, as the overrides its run applies."""
    return {d.key: _suggest_one(trial, d) for d in config.space}


def _suggest_one(trial, d: Dimension):
    if d.kind == "choice":
        return trial.suggest_categorical(d.key, list(d.choices))
    if d.kind == "int":
        return trial.suggest_int(d.key, int(d.low), int(d.high), step=d.step or 1, log=d.log)
    return trial.suggest_float(d.key, float(d.low), float(d.high), log=d.kind == "loguniform",
                               step=d.step if d.kind == "uniform" else None)
