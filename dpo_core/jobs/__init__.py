"""Background jobs: one lifecycle for every kind (training runs, evaluations, pair builds, sweeps,
model preparation).

- `rows.py`: the `runs` table (one row per job): ids, find by id or unique prefix, read, update.
- `processes.py`: is a pid still the process we started; process groups; launching without a shell.
- `lifecycle.py`: start, the device queue, liveness (lost / stalled), cancel, wait, log tail.
- `runner.py`: the job process itself (`python -m dpo_core.jobs.runner RUN_DIR`): heartbeat,
  progress, cancellation, the final status and its error kind.
- `channel.py`: how a job on another host reports without the store (lines in its run folder,
  ingested exactly once).
- `slurm_jobs.py`: jobs on a Slurm target (`cluster/`): submit, follow, cancel, resubmit.
"""
