"""Cluster targets: named Slurm settings a run can be sent to (`local` is this machine).

Targets live in the store's settings (`cluster.targets`, JSON), so the Settings page, the CLI
(`targets add/list/remove/import/export`) and a YAML file are three views of one list.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..fields import build, check, read_yaml, setting
from ..store import Store

LOCAL = "local"
SETTING = "cluster.targets"
TIME_LIMIT = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$|^\d+$")
MEMORY = re.compile(r"^\d+[KMGT]?$", re.I)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")


@dataclass
class SlurmTarget:
    """One Slurm cluster (or partition of one) runs are sent to with `sbatch`."""

    name: str = setting("", "A short name to pick the target by (train --target NAME).")
    partition: str = setting("", "Slurm partition (--partition); '' = the cluster's default.")
    account: str = setting("", "Slurm account to charge (--account); '' = your default.")
    qos: str = setting("", "Quality of service (--qos); '' = the default.")
    time_limit: str = setting("01:00:00", "Time limit per job (--time): minutes, HH:MM:SS or "
                                          "D-HH:MM:SS. A longer run checkpoints and requeues.")
    gpus_per_node: int = setting(0, "GPUs per node (--gres=gpu:N); 0 = none (CPU).")
    nodes: int = setting(1, "Nodes (--nodes); with num_processes, accelerate spreads the "
                            "processes over them.")
    cpus_per_task: int = setting(0, "CPUs per task (--cpus-per-task); 0 = Slurm's default.")
    mem_per_task: str = setting("", "Memory per task, e.g. 16G (--mem); '' = Slurm's default.")
    extra_sbatch: list[str] = setting([], "Extra #SBATCH lines, e.g. '--constraint=a100'.")
    python: str = setting("", "The Python environment on the cluster (a venv/conda folder or "
                              "its python); '' = the lab's own (a lab on the login node).")
    shared_paths: list[str] = setting([], "Folders the cluster's nodes see at the same path "
                                          "(shared filesystem). Run folders must be under one; "
                                          "empty = every path is shared (lab on the login node).")
    signal_s: int = setting(120, "Seconds before the time limit when the worker is told to "
                                 "checkpoint (--signal=B:TERM@N), then requeued.")
    requeue: bool = setting(True, "Requeue after the time limit or a preemption (--requeue), "
                                  "resuming from the checkpoint.")

    def __post_init__(self) -> None:
        check(bool(NAME.match(self.name or "")) and self.name != LOCAL, "name", self.name,
              "Use letters, digits, '-', '_' or '.', up to 40 characters, not 'local'.")
        check(bool(TIME_LIMIT.match(str(self.time_limit))), "time_limit", self.time_limit,
              "Use minutes (90), HH:MM:SS (01:30:00) or D-HH:MM:SS.")
        check(self.gpus_per_node >= 0, "gpus_per_node", self.gpus_per_node, "Use 0 or more.")
        check(self.nodes >= 1, "nodes", self.nodes, "Use 1 or more.")
        check(self.cpus_per_task >= 0, "cpus_per_task", self.cpus_per_task, "Use 0 or more.")
        check(not self.mem_per_task or bool(MEMORY.match(self.mem_per_task)), "mem_per_task",
              self.mem_per_task, "Use a size such as 16G or 4000M, or '' for the default.")
        check(self.signal_s >= 10, "signal_s", self.signal_s,
              "Use at least 10 seconds: the worker needs time to write a checkpoint.")
        bad = [line for line in self.extra_sbatch if not line.strip().lstrip("#").strip()
               .removeprefix("SBATCH").strip().startswith("-")]
        check(not bad, "extra_sbatch", bad, "Write options as Slurm spells them, e.g. "
                                            "'--constraint=a100' or '#SBATCH --exclusive'.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def time_limit_s(self) -> int:
        """The time limit in seconds (Slurm's formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S)."""
        text = str(self.time_limit)
        days, _, rest = text.rpartition("-")
        parts = [int(p) for p in rest.split(":")]
        if days:
            parts += [0] * (3 - len(parts))
            h, m, s = parts
            return int(days) * 86400 + h * 3600 + m * 60 + s
        if len(parts) == 1:
            return parts[0] * 60
        if len(parts) == 2:
            return parts[0] * 60 + parts[1]
        return parts[0] * 3600 + parts[1] * 60 + parts[2]


def list_targets(store: Store) -> list[SlurmTarget]:
    """The saved cluster targets, by name (`local` is implicit and not listed)."""
    raw = json.loads(store.get_setting(SETTING, "[]") or "[]")
    return sorted((build(SlurmTarget, t, "target field") for t in raw), key=lambda t: t.name)


def target_names(store: Store) -> list[str]:
    """`local` first, then the saved targets (pickers)."""
    return [LOCAL, *(t.name for t in list_targets(store))]


def get_target(store: Store, name: str) -> SlurmTarget | None:
    """The named target; None for `local`; a NotFoundError listing the names otherwise."""
    if not name or name == LOCAL:
        return None
    for target in list_targets(store):
        if target.name == name:
            return target
    raise ConfigError(f"target is {name!r}, which is not a cluster target of this lab.",
                      f"Use one of: {', '.join(target_names(store))}, or add it in Settings "
                      "or with `python -m dpo_core targets add`.", field="target")


def save_target(store: Store, target: SlurmTarget) -> None:
    """Add a target, or replace the one of the same name."""
    kept = [t.to_dict() for t in list_targets(store) if t.name != target.name]
    store.set_setting(SETTING, json.dumps([*kept, target.to_dict()]))


def remove_target(store: Store, name: str) -> None:
    get_target(store, name)  # refuses an unknown name
    store.set_setting(SETTING, json.dumps([t.to_dict() for t in list_targets(store)
                                           if t.name != name]))


def load_targets(path: str | Path) -> list[SlurmTarget]:
    """Targets from a YAML file: `targets: [{name: gpu, partition: gpu, ...}, ...]`."""
    data = read_yaml(path, "Targets file", "targets.yaml with `targets: [{name: gpu, ...}]`")
    return _targets_of(data, str(path))


def parse_targets(text: str) -> list[SlurmTarget]:
    """Targets from YAML text (the Settings page's import box)."""
    import yaml

    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"The targets YAML does not parse: {exc}",
                          "Write `targets:` followed by one mapping per target.",
                          field="targets") from exc
    return _targets_of(data if isinstance(data, dict) else {}, "The YAML")


def _targets_of(data: dict, where: str) -> list[SlurmTarget]:
    items = data.get("targets")
    if not isinstance(items, list) or not all(isinstance(t, dict) for t in items):
        raise ConfigError(f"{where} has no list of targets.",
                          "Write `targets:` followed by one mapping per target.", field="targets")
    return [build(SlurmTarget, t, "target field") for t in items]


def dump_targets(store: Store) -> str:
    """The saved targets as the YAML `load_targets` reads."""
    import yaml

    return yaml.safe_dump({"targets": [t.to_dict() for t in list_targets(store)]},
                          sort_keys=False)


def check_visible(target: SlurmTarget, run_dir: str | Path) -> None:
    """Refuse a run folder the cluster's nodes cannot see (not under a shared path)."""
    if not target.shared_paths:
        return
    folder = Path(run_dir).resolve()
    shared = [Path(p).expanduser().resolve() for p in target.shared_paths]
    if any(folder == p or p in folder.parents for p in shared):
        return
    raise ConfigError(
        f"The run folder {folder} is not on a path the cluster '{target.name}' sees "
        f"(shared_paths: {', '.join(map(str, shared))}).",
        "Put the workspace on the shared filesystem (DPO_LAB_HOME=/shared/you/dpo_lab), or "
        "add the folder that holds it to the target's shared_paths if the nodes mount it.",
        field="target")
