"""Sweeps: a queue of DPO runs over hyper-parameters (or datasets), each evaluated against the
baseline, as one background job.

- `config.py`: SweepConfig, the swept parameters and the run config of each trial.
- `search.py`: grid, random and Bayesian (Optuna TPE) choice of the next trial.
- `control.py`: start, read, pause, resume, extend, wait (the `sweeps` tables).
- `runner.py`: the job that runs trials, prunes, and evaluates each run against the baseline.
- `report.py`: leaderboard, best trial, parameter importance, metric per dataset.
"""
