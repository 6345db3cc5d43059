"""The training worker: `python -m dpo_core.training.worker RUN_DIR`.

Reads only the run folder, trains with TRL's DPOTrainer, and writes status, heartbeat, metrics
and samples to the store. SIGTERM finishes the current step, writes a checkpoint and exits
cancelled. Works under `accelerate launch` too: only the main process writes to the store.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from ..errors import ConfigError, DataError, ModelError
from ..models import FORMAT_FILE, RUN_MODEL_FILE, load_tokenizer
from ..store import Store, dumps, now
from .callbacks import LabCallback, SimulatedOOM, write_sample
from .config import RunConfig, quantization_config, resolve_precision, to_trl
from .jobs import RESUME_FILE, RUN_FILE, log_tail, schedule

HEARTBEAT_S = 5.0


class Cancelled(Exception):
    """SIGTERM arrived before training started."""


class Worker:
    """One run's training process."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        info = json.loads((run_dir / RUN_FILE).read_text())
        self.run_id = info["id"]
        self.store = Store(info["db"])
        self.stop = False
        self.training = False
        self.main = int(os.environ.get("RANK", "0")) == 0

    # -- lifecycle ------------------------------------------------------------------------
    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_sigterm)
        if self.main:
            self._update(status="running", heartbeat=now())
            threading.Thread(target=self._heartbeat, daemon=True).start()
        try:
            status = self.train()
        except Cancelled:
            status = "cancelled"
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a readable status
            traceback.print_exc()
            sys.stderr.flush()
            if self.main:
                self._update(status="failed", finished=now(), error_kind=error_kind(exc),
                             error_text=f"{type(exc).__name__}: {exc}\n\n"
                                        + log_tail(self.run_dir))
                schedule(self.store)
            return 1
        if self.main:
            self._update(status=status, finished=now())
            schedule(self.store)
        return 0

    def _on_sigterm(self, signum, frame) -> None:
        print("SIGTERM: stopping after this step and writing a checkpoint.", flush=True)
        self.stop = True
        if not self.training:
            raise Cancelled()

    def _heartbeat(self) -> None:
        while True:
            time.sleep(HEARTBEAT_S)
            try:
                self._update(heartbeat=now())
            except Exception:  # noqa: BLE001 - a busy store must not kill the run
                pass

    def _update(self, **cols) -> None:
        sets = ", ".join(f"{k}=?" for k in cols)
        with self.store.write() as conn:
            conn.execute(f"UPDATE runs SET {sets} WHERE id=?", (*cols.values(), self.run_id))

    # -- training -------------------------------------------------------------------------
    def train(self) -> str:
        from trl import DPOTrainer

        from ..device import detect_device

        cfg = RunConfig.load(self.run_dir / "config.yaml")
        device = detect_device()
        try:
            args, peft_config = to_trl(cfg, self.run_dir, device)
        except (ValueError, TypeError) as exc:  # TRL/transformers refused a combination
            raise ConfigError(f"config.yaml was refused by TRL: {exc}",
                              "Fix the named field in the config and start a new run.") from exc
        model, tok, model_info = self.load_model(cfg, device)
        train, evals = self.load_pairs(cfg)
        callback = LabCallback(self.store, self.run_id, stop_flag=lambda: self.stop,
                               sampler=None, sample_every=cfg.sample_every,
                               oom_at_step=cfg.debug.oom_at_step,
                               step_delay=cfg.debug.step_delay, write=self.main,
                               metrics=not os.environ.get("DPO_LAB_BENCH_NO_WRITER"))
        trainer_cls = self.trainer_class(cfg, DPOTrainer)
        trainer = trainer_cls(model=model, args=args, train_dataset=train,
                              eval_dataset=evals, processing_class=tok,
                              peft_config=peft_config, callbacks=[callback])
        prompts = self.sample_prompts(cfg)
        callback.sampler = lambda step: self.write_samples(trainer, tok, prompts, step, cfg)
        resume = self.resume_checkpoint()
        self.training = True
        if self.stop:
            return "cancelled"
        trainer.train(resume_from_checkpoint=resume)
        self.training = False
        if self.stop:
            return "cancelled"
        self.save_final(trainer, tok, cfg, model_info)
        if self.main:
            self.write_samples(trainer, tok, prompts, trainer.state.global_step, cfg)
            self._update(result_json=dumps({"metrics": callback.last_logs,
                                            "final": str(self.run_dir / "final")}),
                         step=trainer.state.global_step)
        return "completed"

    def trainer_class(self, cfg: RunConfig, default):
        """DPOTrainer, or its subclass using the workspace's reference log-prob cache."""
        if not cfg.precompute_ref_log_probs:
            return default
        from ..workspace import get_workspace
        from .refcache import trainer_class

        home = json.loads((self.run_dir / RUN_FILE).read_text()).get("workspace")
        return trainer_class(cfg, self.run_dir, get_workspace(home).cache)

    def load_model(self, cfg: RunConfig, device):
        """The base model from its folder (so TRL can rebuild the reference from the same path)."""
        import torch
        from transformers import AutoModelForCausalLM

        info = json.loads((self.run_dir / "model.json").read_text())
        path = info["path"]
        if path.startswith(("/", ".", "~")) and not Path(path).exists():
            raise ModelError(f"Model folder {path} for '{info['spec']}' no longer exists.",
                             "Restore the folder, or start a new run with an existing model.")
        kwargs = {"dtype": torch.float32, "use_safetensors": True}
        quant = quantization_config(cfg)
        if quant is not None:
            kwargs.update(quantization_config=quant, dtype=torch.bfloat16)
        elif resolve_precision(cfg, device) == "bf16" and cfg.method == "full":
            kwargs["dtype"] = torch.bfloat16
        try:
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        except (OSError, ValueError) as exc:
            raise ModelError(f"Could not load the model {path}: {exc}",
                             "Check that it is a complete model folder with safetensors.") from exc
        return model, load_tokenizer(path), info

    def load_pairs(self, cfg: RunConfig):
        from datasets import Dataset

        def read(name: str) -> list[dict]:
            path = self.run_dir / name
            rows = []
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                try:
                    row = json.loads(line)
                    rows.append({k: row[k] for k in ("prompt", "chosen", "rejected")})
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise DataError(f"{path} line {n} is not a pair ({exc}).",
                                    "Start a new run; the frozen pairs were damaged.") from exc
            return rows

        train = read("pairs.train.jsonl")
        if not train:
            raise DataError("pairs.train.jsonl holds no pairs.", "Start a run on a dataset "
                            "whose train split has pairs.")
        evals = read("pairs.eval.jsonl") if cfg.eval_steps > 0 else []
        return Dataset.from_list(train), (Dataset.from_list(evals) if evals else None)

    def resume_checkpoint(self) -> str | None:
        f = self.run_dir / RESUME_FILE
        if not f.is_file():
            return None
        return json.loads(f.read_text()).get("checkpoint")

    # -- outputs --------------------------------------------------------------------------
    def save_final(self, trainer, tok, cfg: RunConfig, model_info: dict) -> None:
        """final/: adapter or full weights + tokenizer + prompt format + base spec (atomic)."""
        final = self.run_dir / "final"
        work = self.run_dir / "final.tmp"
        trainer.save_model(str(work))
        if not self.main:
            return
        tok.save_pretrained(str(work))
        (work / FORMAT_FILE).write_text((self.run_dir / "prompt_format.json").read_text())
        kind = "full" if cfg.method == "full" else "lora"
        (work / RUN_MODEL_FILE).write_text(json.dumps(
            {"base": _portable_spec(model_info), "kind": kind, "run_id": self.run_id}))
        if final.exists():
            import shutil

            shutil.rmtree(final)
        work.replace(final)

    def sample_prompts(self, cfg: RunConfig) -> list[str]:
        if cfg.sample_prompts <= 0:
            return []
        for name in ("pairs.eval.jsonl", "pairs.train.jsonl"):
            lines = (self.run_dir / name).read_text(encoding="utf-8").splitlines()
            if lines:
                return [json.loads(x)["prompt"] for x in lines[:cfg.sample_prompts]]
        return []

    def write_samples(self, trainer, tok, prompts: list[str], step: int, cfg: RunConfig) -> None:
        """Greedy generations on fixed prompts, so runs can be compared by eye step by step."""
        import torch

        if not prompts:
            return
        model = trainer.model
        was_training = model.training
        model.eval()
        try:
            for prompt in prompts:
                enc = tok(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
                with torch.no_grad():
                    out = model.generate(**enc, max_new_tokens=cfg.sample_max_new_tokens,
                                         do_sample=False, pad_token_id=tok.pad_token_id)
                text = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
                write_sample(self.store, self.run_id, step, prompt, text)
        finally:
            model.train(was_training)


def _portable_spec(model_info: dict) -> str:
    """The base as a spec that loads elsewhere: builtin/run/hub specs as is, folders by path."""
    spec = model_info["spec"]
    return spec if spec.startswith(("builtin:", "run:")) or not Path(spec).exists() \
        else model_info["path"]


def error_kind(exc: BaseException) -> str:
    """oom | data | config | model | unknown, from the exception and its message."""
    text = f"{type(exc).__name__} {exc}".lower()
    if isinstance(exc, SimulatedOOM) or "out of memory" in text or "outofmemory" in text:
        return "oom"
    if isinstance(exc, DataError) or "pairs.train.jsonl" in text:
        return "data"
    if isinstance(exc, ModelError):
        return "model"
    if isinstance(exc, (ConfigError, ValueError, TypeError)) and "config" in text:
        return "config"
    if isinstance(exc, ConfigError):
        return "config"
    return "unknown"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m dpo_core.training.worker RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(argv[0]).resolve()
    print(f"[{time.strftime('%H:%M:%S')}] worker pid {os.getpid()} for {run_dir}", flush=True)
    return Worker(run_dir).run()


if __name__ == "__main__":
    raise SystemExit(main())
