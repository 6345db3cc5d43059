"""Training runs as background jobs: freeze a run folder, queue, launch, watch, cancel, resume.

The worker is `python -m dpo_core.training.worker RUN_DIR` in its own process group, started
without a shell and logging to `worker.log` (never a pipe to us). The store is the truth; the
scheduler here is called by `start_run`, by the CLI follow loop and by the UI on each read.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..data.datasets import count_pairs, get_dataset, iter_pairs
from ..errors import ConfigError, JobError
from ..formats import PromptFormat
from ..jobs import find_row
from ..models import READY_FILE, load_tokenizer, read_prompt_format, resolve_path
from ..procs import process_start_time
from ..store import Store, dumps, now
from ..workspace import Workspace, get_workspace
from .checkpoints import last_complete_checkpoint
from .config import RunConfig, validate

ACTIVE = ("queued", "running")
FINAL = ("completed", "failed", "cancelled", "lost")
CANCEL_TIMEOUT_S = 60.0
RUN_FILE = "run.json"  # run id + store path: all the worker needs besides the folder
RESUME_FILE = "resume.json"

_children: dict[int, subprocess.Popen] = {}  # workers this process started (reaped on schedule)


# ---------------------------------------------------------------------------------------
# Starting: freeze the run folder, insert the row, schedule
# ---------------------------------------------------------------------------------------
def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def start_run(store: Store, cfg: RunConfig, workspace: Workspace | None = None, *,
              launch: bool = True) -> str:
    """Validate, freeze runs/<id>/ and queue the run; returns the run id."""
    ws = workspace or get_workspace()
    validate(cfg, _device(), store, ws)
    run_id = new_run_id()
    run_dir = ws.runs / run_id
    run_dir.mkdir(parents=True)
    try:
        info = freeze_run(store, cfg, run_dir, ws, run_id)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    with store.write() as conn:
        conn.execute(
            "INSERT INTO runs(id, name, kind, status, config_json, dataset_id, run_dir, created,"
            " total_steps, host) VALUES(?,?,?,?,?,?,?,?,?,?)",
            (run_id, cfg.name or run_id, "train", "queued", dumps(cfg.to_dict()),
             info["dataset_id"], str(run_dir), now(), info["total_steps"], socket.gethostname()))
    if launch:
        schedule(store, ws)
    return run_id


def freeze_run(store: Store, cfg: RunConfig, run_dir: Path, ws: Workspace, run_id: str) -> dict:
    """Write everything the worker needs: config, rendered pairs, prompt format, model info."""
    ds = get_dataset(store, cfg.dataset)
    model_path = resolve_path(cfg.model, ws)
    tok = load_tokenizer(model_path)
    fmt = _prompt_format(cfg, ds.prompt_format, model_path, tok)
    train = _render(store, ds.id, cfg.train_split, cfg.max_train_pairs, fmt, tok, cfg)
    evals = []
    if cfg.eval_split and count_pairs(store, ds.id, cfg.eval_split):
        evals = _render(store, ds.id, cfg.eval_split, cfg.max_eval_pairs, fmt, tok, cfg)
    _write_jsonl(run_dir / "pairs.train.jsonl", train)
    _write_jsonl(run_dir / "pairs.eval.jsonl", evals)
    (run_dir / "prompt_format.json").write_text(json.dumps(fmt.to_dict(), indent=2))
    (run_dir / "model.json").write_text(json.dumps(
        {"spec": cfg.model, "path": model_path, "fingerprint": model_fingerprint(model_path)},
        indent=2))
    cfg = RunConfig.from_dict({**cfg.to_dict(), "name": cfg.name or run_id})
    cfg.save(run_dir / "config.yaml")
    (run_dir / RUN_FILE).write_text(json.dumps(
        {"id": run_id, "db": str(Path(store.path).resolve()), "workspace": str(ws.home)}))
    per_step = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
    total = cfg.max_steps if cfg.max_steps > 0 else \
        math.ceil(math.ceil(len(train) / (cfg.per_device_train_batch_size * cfg.num_processes))
                  / cfg.gradient_accumulation_steps * cfg.num_train_epochs)
    return {"dataset_id": ds.id, "total_steps": int(total), "train": len(train),
            "eval": len(evals), "pairs_per_step": per_step}


def _prompt_format(cfg: RunConfig, dataset_format: dict, model_path: str, tok) -> PromptFormat:
    if isinstance(cfg.prompt_format, dict):
        return PromptFormat.from_dict(cfg.prompt_format)
    if dataset_format:
        return PromptFormat.from_dict(dataset_format)
    return read_prompt_format(model_path, tok)


def _render(store, dataset_id, split, limit, fmt: PromptFormat, tok, cfg: RunConfig) -> list[dict]:
    """Pairs of one split as TRL's standard text shape, prompts cut to max_prompt_length."""
    from ..errors import ConfigError

    rows, too_long = [], 0
    for pair in iter_pairs(store, dataset_id, split):
        if limit and len(rows) >= limit:
            break
        prompt = fmt.render_prompt(pair.prompt, tok)
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        if cfg.max_prompt_length and len(ids) > cfg.max_prompt_length:
            # keep the end of the prompt: the turn being answered matters most
            prompt = tok.decode(ids[-cfg.max_prompt_length:])
        elif len(ids) >= cfg.max_length:
            too_long = max(too_long, len(ids))
        rows.append({"pair_id": pair.id, "prompt": prompt,
                     "chosen": fmt.render_reply(pair.chosen, tok),
                     "rejected": fmt.render_reply(pair.rejected, tok)})
    if too_long:
        raise ConfigError(f"max_length is {cfg.max_length} but a {split} prompt has {too_long} "
                          "tokens, leaving no room for its reply.",
                          f"Raise max_length above {too_long + 32}, or set max_prompt_length "
                          f"(e.g. {cfg.max_length // 2}) to cut long prompts.")
    return rows


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def model_fingerprint(path: str) -> str:
    """A cheap identity of a model folder: its prepared fingerprint, else names+sizes of weights."""
    import hashlib

    folder = Path(path)
    ready = folder / READY_FILE
    if ready.is_file():
        info = json.loads(ready.read_text())
        if info.get("fingerprint"):
            return info["fingerprint"]
    if not folder.is_dir():
        return f"hub:{path}"
    parts = [(p.name, p.stat().st_size) for p in sorted(folder.glob("*.safetensors"))]
    config = (folder / "config.json").read_text() if (folder / "config.json").is_file() else ""
    return hashlib.sha256(json.dumps([parts, config]).encode()).hexdigest()


# ---------------------------------------------------------------------------------------
# Scheduling and process status
# ---------------------------------------------------------------------------------------
def _device():
    from ..device import detect_device

    global _DEVICE
    if _DEVICE is None:
        _DEVICE = detect_device()
    return _DEVICE


_DEVICE = None


def slots(store: Store) -> int:
    """Training jobs allowed at once: 1 on CPU; per GPU the `training.jobs_per_gpu` setting."""
    dev = _device()
    if dev.kind != "cuda":
        return 1
    return max(1, int(store.get_setting("training.jobs_per_gpu", "1"))) * dev.count


def schedule(store: Store, workspace: Workspace | None = None) -> list[str]:
    """Mark dead runs lost and launch queued runs while slots are free; returns launched ids."""
    refresh(store)
    limit = slots(store)  # outside the write lock: the first call imports torch
    launched = []
    while True:
        with store.write() as conn:
            running = conn.execute("SELECT COUNT(*) FROM runs WHERE status='running' "
                                   "AND kind='train'").fetchone()[0]
            if running >= limit:
                break
            row = conn.execute("SELECT id, run_dir FROM runs WHERE status='queued' "
                               "AND kind='train' ORDER BY created, id LIMIT 1").fetchone()
            if row is None:
                break
            gpu = _free_gpu(conn)
            try:
                proc = launch_worker(Path(row["run_dir"]), gpu)
            except OSError as exc:
                conn.execute("UPDATE runs SET status='failed', error_kind='unknown', error_text=?,"
                             " finished=? WHERE id=?", (f"Could not start the worker: {exc}",
                                                         now(), row["id"]))
                continue
            conn.execute(
                "UPDATE runs SET status='running', pid=?, pgid=?, proc_start=?, host=?,"
                " heartbeat=?, started=COALESCE(started, ?), result_json=? WHERE id=?",
                (proc.pid, proc.pid, process_start_time(proc.pid), socket.gethostname(), now(),
                 now(), dumps({"gpu": gpu}), row["id"]))
            launched.append(row["id"])
    return launched


def _free_gpu(conn) -> int | None:
    dev = _device()
    if dev.kind != "cuda":
        return None
    busy: dict[int, int] = {}
    for r in conn.execute("SELECT result_json FROM runs WHERE status='running' "
                              "AND kind='train'"):
        g = json.loads(r["result_json"] or "{}").get("gpu")
        if g is not None:
            busy[g] = busy.get(g, 0) + 1
    return min(range(dev.count), key=lambda g: busy.get(g, 0))


def launch_worker(run_dir: Path, gpu: int | None = None) -> subprocess.Popen:
    """Start the worker in its own session/process group, output to worker.log, no shell."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "") if env.get(
        "PYTHONPATH") else root
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    cmd = worker_command(run_dir)
    if len(cmd) > 4 and gpu is not None:  # several processes: let accelerate place them
        env.pop("CUDA_VISIBLE_DEVICES", None)
    with open(run_dir / "worker.log", "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, env=env, cwd=str(run_dir))
    _children[proc.pid] = proc
    return proc


def worker_command(run_dir: Path) -> list[str]:
    """The worker command line: plain python, or `accelerate launch` for several processes."""
    worker = ["-m", "dpo_core.training.worker", str(run_dir)]
    try:
        cfg = RunConfig.load(run_dir / "config.yaml")
    except ConfigError:
        cfg = None  # the worker reports the broken config as the run's failure
    if cfg is None or (cfg.num_processes <= 1 and not cfg.accelerate_config):
        return [sys.executable, *worker]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes",
           str(cfg.num_processes), "--num_machines", "1", "--main_process_port",
           str(_free_port())]
    if cfg.accelerate_config:
        cmd += ["--config_file", str(Path(cfg.accelerate_config).expanduser())]
    else:
        cmd += ["--multi_gpu"]  # torchrun-style DDP; on CPU the processes use gloo
    return cmd + worker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


STALL_AFTER_S = 60.0  # worker heartbeats come every 5 s; this much silence is a stall


def is_alive(pid: int | None, start: float | None) -> bool:
    """True if `pid` runs and is the same process (same start time), not a recycled pid."""
    if not pid:
        return False
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        _children.pop(pid, None)
        return False
    current = process_start_time(pid)
    return current is not None and (start is None or current == start)


def refresh(store: Store) -> None:
    """Running rows whose process is gone (or recycled) on this host become 'lost'."""
    for pid, child in list(_children.items()):
        if child.poll() is not None:
            _children.pop(pid, None)
    host = socket.gethostname()
    for row in store.query("SELECT id, pid, proc_start, host, run_dir FROM runs "
                           "WHERE status='running' AND kind='train'"):
        if row["host"] and row["host"] != host:
            continue
        if is_alive(row["pid"], row["proc_start"]):
            continue
        with store.write() as conn:
            conn.execute("UPDATE runs SET status='lost', finished=?, error_text=? "
                         "WHERE id=? AND status='running'",
                         (now(), "The worker process is gone without a final status.\n"
                          + log_tail(row["run_dir"]), row["id"]))


def log_tail(run_dir: str | Path, lines: int = 30) -> str:
    path = Path(run_dir) / "worker.log"
    if not path.is_file():
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 20000))
        text = f.read().decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------
def _run_dict(row) -> dict:
    d = dict(row)
    d["config"] = json.loads(d.pop("config_json") or "{}")
    d["result"] = json.loads(d.pop("result_json") or "{}")
    d["heartbeat_age"] = None if not d["heartbeat"] else max(0.0, now() - d["heartbeat"])
    d["warning"] = stall_warning(d)
    return d


def stall_warning(run: dict) -> str:
    """A running run whose worker stopped beating: alive (so not lost) but frozen or hung.

    The worker beats from its own thread every few seconds whatever training does, so a silence
    of STALL_AFTER_S means the whole process stopped (SIGSTOP, swapped out, stuck in a driver
    call holding the interpreter) or, for a run on another host, that host went away.
    """
    age = run.get("heartbeat_age")
    if run.get("status") != "running" or age is None or age < STALL_AFTER_S:
        return ""
    where = "" if run.get("host") in ("", socket.gethostname()) else f" on {run['host']}"
    return (f"No heartbeat from the worker{where} for {age:.0f} s: it is alive but not "
            "responding (stopped, hung or starved). Cancel the run to free its slot, then "
            "resume it from its last checkpoint.")


def get_run(store: Store, run_id: str) -> dict:
    return _run_dict(find_row(store, run_id, "run"))


def list_runs(store: Store, status: str | None = None,
              kinds: tuple[str, ...] = ("train", "external")) -> list[dict]:
    """Training runs (and imported training logs), newest first."""
    marks = ",".join("?" * len(kinds))
    sql = f"SELECT * FROM runs WHERE kind IN ({marks})"
    params: tuple = tuple(kinds)
    if status:
        sql += " AND status=?"
        params += (status,)
    return [_run_dict(r) for r in store.query(sql + " ORDER BY created DESC", params)]


def read_metrics(store: Store, run_id: str, after_id: int = 0) -> list[dict]:
    """Metric rows with id > after_id (a live view polls with the last id it saw)."""
    rows = store.query("SELECT id, step, split, key, value, at FROM metrics "
                       "WHERE run_id=? AND id>? ORDER BY id", (run_id, after_id))
    return [dict(r) for r in rows]


def read_samples(store: Store, run_id: str) -> list[dict]:
    return [dict(r) for r in store.query(
        "SELECT step, prompt, completion, at FROM samples WHERE run_id=? ORDER BY id", (run_id,))]


# ---------------------------------------------------------------------------------------
# Cancel, resume, delete
# ---------------------------------------------------------------------------------------
def cancel_run(store: Store, run_id: str, timeout: float = CANCEL_TIMEOUT_S,
               wait: bool = True) -> dict:
    """Stop a run: SIGTERM to its group (it checkpoints and exits), SIGKILL after `timeout`."""
    run = get_run(store, run_id)
    if run["status"] == "queued":
        _set_status(store, run["id"], "cancelled", only_if="queued")
        return get_run(store, run["id"])
    if run["status"] != "running":
        raise JobError(f"Run {run['id']} is {run['status']}, not running.",
                       "Only queued or running runs can be cancelled.")
    _signal_group(run["pgid"], signal.SIGTERM)
    if not wait:
        return get_run(store, run["id"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and is_alive(run["pid"], run["proc_start"]):
        time.sleep(0.2)
    if is_alive(run["pid"], run["proc_start"]):
        _signal_group(run["pgid"], signal.SIGKILL)
        time.sleep(0.2)
    _wait_group_gone(run["pgid"])
    is_alive(run["pid"], run["proc_start"])  # reaps our own child
    _set_status(store, run["id"], "cancelled", only_if="running")
    schedule(store)
    return get_run(store, run["id"])


def _signal_group(pgid: int | None, sig: int) -> None:
    if not pgid:
        return
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_group_gone(pgid: int | None, timeout: float = 10.0) -> None:
    """Kill stragglers of the group (forked helpers) so nothing of the job is left behind."""
    deadline = time.monotonic() + timeout
    while pgid and time.monotonic() < deadline:
        if not group_members(pgid):
            return
        _signal_group(pgid, signal.SIGKILL)
        time.sleep(0.1)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) pids in a process group."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(entry.name))
    for pid in out:
        child = _children.get(pid)
        if child is not None and child.poll() is not None:
            out.remove(pid)
    return out


def _set_status(store: Store, run_id: str, status: str, only_if: str | None = None) -> None:
    with store.write() as conn:
        sql = "UPDATE runs SET status=?, finished=COALESCE(finished, ?) WHERE id=?"
        params: tuple = (status, now(), run_id)
        if only_if:
            sql += " AND status=?"
            params += (only_if,)
        conn.execute(sql, params)


def resume_run(store: Store, run_id: str, launch: bool = True) -> dict:
    """Queue a stopped run again from its last complete checkpoint (from scratch if none)."""
    refresh(store)
    run = get_run(store, run_id)
    if run["status"] in ACTIVE or run["status"] == "completed":
        raise JobError(f"Run {run['id']} is {run['status']}.",
                       "Only failed, cancelled or lost runs can be resumed.")
    run_dir = Path(run["run_dir"])
    ckpt = last_complete_checkpoint(run_dir)
    step = int(ckpt.name.split("-")[-1]) if ckpt else 0
    (run_dir / RESUME_FILE).write_text(json.dumps({"checkpoint": str(ckpt) if ckpt else None,
                                                   "step": step}))
    with store.write() as conn:
        # the resumed worker re-logs from `step` on: drop what came after it, so no step repeats
        conn.execute("DELETE FROM metrics WHERE run_id=? AND step>?", (run["id"], step))
        conn.execute("DELETE FROM samples WHERE run_id=? AND step>?", (run["id"], step))
        conn.execute("UPDATE runs SET status='queued', finished=NULL, pid=NULL, pgid=NULL,"
                     " proc_start=NULL, error_kind='', error_text='', step=?, resumed_from=?"
                     " WHERE id=?", (step, ckpt.name if ckpt else "", run["id"]))
    if launch:
        schedule(store)
    return get_run(store, run["id"])


def delete_run(store: Store, run_id: str) -> None:
    """Delete a finished run: its folder and its rows."""
    run = get_run(store, run_id)
    refresh(store)
    run = get_run(store, run["id"])
    if run["status"] in ACTIVE:
        raise JobError(f"Run {run['id']} is {run['status']}.", "Cancel it first.")
    with store.write() as conn:
        for table in ("metrics", "samples"):
            conn.execute(f"DELETE FROM {table} WHERE run_id=?", (run["id"],))
        conn.execute("DELETE FROM runs WHERE id=?", (run["id"],))
    if run["run_dir"]:
        shutil.rmtree(run["run_dir"], ignore_errors=True)


def wait_run(store: Store, run_id: str, poll: float = 1.0, on_tick=None,
             timeout: float | None = None) -> dict:
    """Block until the run reaches a final status (scheduling queued work meanwhile)."""
    start = time.monotonic()
    while True:
        schedule(store)
        run = get_run(store, run_id)
        if on_tick:
            on_tick(run)
        if run["status"] in FINAL:
            return run
        if timeout is not None and time.monotonic() - start > timeout:
            return run
        time.sleep(poll)


def export_run(store: Store, run_id: str, *, merge: bool = True, out: str | Path | None = None,
               push_to: str | None = None) -> dict:
    """Merge/copy a finished run into a model folder (see training.export)."""
    from .export import export_run as _export

    return _export(store, run_id, merge=merge, out=out, push_to=push_to)
