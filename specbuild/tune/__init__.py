"""`specbuild tune`: a hyperparameter search over a spec's `tune:` section, on Optuna.

`folder.py` is the tune folder and where the study is stored, `space.py` the sampler, the
pruner and each trial's values, `trial.py` one trial as a training run, `study.py` the search
(`tune()` and the command), `outputs.py` what a study leaves: the trials table, trials.json
and .csv, best.yaml and the plots.  The `tune:` section itself is read and checked in
specbuild/spec/tune_checks.py, with the rest of the spec.
"""
