"""Cluster targets: where a job may run besides this machine, and how to talk to Slurm.

- `targets.py`: SlurmTarget (partition, account, QoS, time limit, GPUs per node, nodes, CPUs and
  memory per task, extra #SBATCH lines, the cluster's Python), kept in the store's settings,
  read from and written to YAML; the run-folder visibility check.
- `slurm.py`: the batch script, and the real `sbatch`, `squeue`/`sacct`/`scontrol` and `scancel`
  commands with Slurm's own words in every error.
- `launch.py`: the command each node runs (`accelerate launch` with the machine rank, main
  address and port from Slurm's environment), run under `srun`.

The lab never schedules a cluster itself; `jobs/` decides when to call these.
"""
