"""Training: DPO runs as background jobs.

- `config.py`: RunConfig (every field with help) and its validation.
- `trl_args.py`: the one mapping from a RunConfig to TRL's, PEFT's and bitsandbytes' configs.
- `freeze.py`: the run folder frozen at launch (rendered pairs, format, model fingerprint).
- `runs.py`: start, read, cancel, resume, delete runs; their checkpoints.
- `worker.py`: the job target that trains with TRL's DPOTrainer.
- `callbacks.py`, `checkpoints.py`, `metrics.py`: what a run reports and keeps.
- `estimate.py`, `refcache.py`: the resource estimate; the reference log-prob cache.
- `history.py`, `insights.py`, `leaderboard.py`: curves, plain-language notes, ranking runs.
- `external_logs.py`: training logs written elsewhere, imported as read-only runs.
"""
