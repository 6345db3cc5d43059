"""The public side-by-side demo: baseline vs fine-tuned, both streaming at once, votes stored as
pairs.

Run it with `python app.py` in an exported Space folder (or `python -m dpo_core.demo.app
--config space_config.json`). It faces the internet, so everything a visitor sends is limited
here on the server: request bodies before they are parsed, the prompt, history, sampling and
max new tokens; typed control tokens are text; votes are rate-limited and checked; only the
documented endpoints run (`guard.py`), the queue refuses a flood fast, no file route serves
anything, and errors shown to visitors are short and name no paths.
Copied into exported Space folders: imports only gradio, the engine and this package.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from functools import partial
from pathlib import Path

import gradio as gr

from .config import CONFIG_FILE, DemoConfig, clamp, load_config
from .engine import SIDES, Engine, Settings
from .guard import RequestGuard
from .votes import VoteBox, vote_record, votes_dir

log = logging.getLogger("dpo_demo")
STREAM_INTERVAL_S = 0.15
GENERIC_ERROR = "The model could not answer right now. Please try again."


# ---------------------------------------------------------------------------------------
# Limits: whatever the browser sends is pulled into the config's bounds here
# ---------------------------------------------------------------------------------------
def clamp_settings(config: DemoConfig, temperature, top_p, top_k, max_new_tokens) -> Settings:
    lim = config.limits
    return Settings(temperature=clamp(temperature, 0.05, lim.max_temperature),
                    top_p=clamp(top_p, 0.05, 1.0), top_k=clamp(top_k, 0, 200, int),
                    max_new_tokens=clamp(max_new_tokens, 1, lim.max_new_tokens, int),
                    repetition_penalty=clamp(config.sampling.repetition_penalty, 1.0, 2.0))


def clamp_prompt(config: DemoConfig, message) -> tuple[str, bool]:
    """The prompt as used: text, cut to the limit; True when it was cut."""
    text = str(message or "").strip()
    limit = config.limits.max_prompt_chars
    return text[:limit], len(text) > limit


def new_state() -> dict:
    return {"left": [], "right": [], "last": None}


def as_messages(history: list[tuple[str, str]]) -> list[dict]:
    """Chatbot messages that show each text exactly as said.

    Gradio runs plain-string content through `inspect.cleandoc`, which turns tabs into spaces and
    strips indentation; typed text parts are shown as given, so what a visitor reads is what a
    vote saves.
    """
    out = []
    for user, reply in history:
        out += [{"role": "user", "content": _text_part(user)},
                {"role": "assistant", "content": _text_part(reply)}]
    return out


def _text_part(text: str) -> dict:
    return {"type": "text", "text": text}


# ---------------------------------------------------------------------------------------
# Handlers
# ---------------------------------------------------------------------------------------
def respond(engine: Engine, message, temperature, top_p, top_k, max_new_tokens, state):
    """Stream both answers (baseline left, fine-tuned right); history is kept server-side."""
    config = engine.config
    state = state if isinstance(state, dict) and "left" in state else new_state()
    prompt, was_cut = clamp_prompt(config, message)
    if not prompt:
        raise gr.Error("Type a prompt first.")
    settings = clamp_settings(config, temperature, top_p, top_k, max_new_tokens)
    turns = config.limits.max_history_turns
    hist = {side: list(state[side])[-turns:] if turns else [] for side in ("left", "right")}
    answers = {side: "" for side in SIDES}
    details = {"prompt_chars": len(prompt), "prompt_cut": was_cut,
               "history_turns": len(hist["left"]), "max_new_tokens": settings.max_new_tokens,
               "temperature": settings.temperature, "top_p": settings.top_p,
               "top_k": settings.top_k}

    def view(status: str):
        chats = [as_messages(hist[s] + [(prompt, answers[s])]) for s in SIDES]
        return chats[0], chats[1], {**details, "status": status}, state

    meter: dict = {}
    shown = 0.0
    try:
        for grown in engine.stream_pair(hist, prompt, settings, meter):
            answers.update(grown)
            if time.monotonic() - shown >= STREAM_INTERVAL_S:  # not every token: each update
                shown = time.monotonic()                       # costs a round trip
                yield view("generating")
    except Exception:
        log.exception("generation failed")
        raise gr.Error(GENERIC_ERROR) from None
    details["new_tokens"], details["prompt_tokens"] = meter["new_tokens"], meter["prompt"]
    for side in SIDES:
        state[side] = (hist[side] + [(prompt, answers[side])])[-max(turns, 1):]
    state["last"] = {"prompt": engine.format.as_pair_prompt(hist["left"], prompt),
                     "prompt_right": engine.format.as_pair_prompt(hist["right"], prompt),
                     "left": answers["left"], "right": answers["right"],
                     "settings": dict(vars(settings))}
    yield view("done")


def vote(engine: Engine, box: VoteBox, verdict: str, state, request: gr.Request):
    """Store a vote on the last answers of this session, at most once; the texts never come
    from the client. Refused votes say why (identical answers, too fast, box full)."""
    last = state.get("last") if isinstance(state, dict) else None
    if not last:
        return "Ask something first, then vote on the two answers.", state
    fmt = engine.format
    prompt = last["prompt_right"] if verdict == "right" else last["prompt"]
    record = vote_record(verdict, prompt, fmt.reply_turn(last["left"]),
                         fmt.reply_turn(last["right"]),
                         {"left": engine.config.base, "right": _tuned_name(engine.config)},
                         last["settings"])
    try:
        refusal = box.cast(record, visitor_of(request), getattr(request, "session_hash", "")
                           or "")
    except OSError:
        log.exception("could not store a vote")
        raise gr.Error("Your vote could not be saved. Please try again later.") from None
    if refusal:
        return refusal, state
    state["last"] = None
    return f"Thanks, your vote ({verdict.replace('_', ' ')}) was saved.", state


def _voter(engine: Engine, box: VoteBox, verdict: str):
    """The handler of one vote button (gradio passes the request to a `gr.Request` argument)."""
    def cast_vote(state, request: gr.Request):
        return vote(engine, box, verdict, state, request)

    return cast_vote


def visitor_of(request) -> str:
    """Who votes: on a Hugging Face Space (SPACE_ID set) the address its proxy saw, the last
    X-Forwarded-For hop, which the proxy appends and a visitor cannot forge; elsewhere the
    connection's own address (a visitor writes any X-Forwarded-For they like)."""
    headers = getattr(request, "headers", None) or {}
    if os.environ.get("SPACE_ID") and hasattr(headers, "get"):
        hops = [h.strip() for h in headers.get("x-forwarded-for", "").split(",") if h.strip()]
        if hops:
            return hops[-1]
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or "unknown"


def clear(state):
    return [], [], {}, "", new_state()


def _tuned_name(config: DemoConfig) -> str:
    return config.run.get("id") or config.adapter or config.tuned


# ---------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------
def describe(config: DemoConfig) -> str:
    """Markdown: the title, the owner's description, the run's key facts and every measured
    number with the count it rests on."""
    lines = [f"# {config.title}"]
    if config.description:
        lines.append(config.description)
    run = config.run or {}
    facts = [(label, run.get(key)) for key, label in
             (("base", "Base model"), ("dataset", "Dataset"), ("method", "Method"),
              ("id", "Run"))]
    rows = [f"| {label} | {value} |" for label, value in facts if value]
    if rows:
        lines.append("| This run | |\n|---|---|\n" + "\n".join(rows))
    results = run.get("results") or [{"metric": k, "value": v}
                                     for k, v in (run.get("metrics") or {}).items()]
    if results:
        lines.append("| Measured | value | n |\n|---|---|---|\n" + "\n".join(
            f"| {r['metric']} | {_fmt(r['value'])} | {r.get('n') or 'not recorded'} |"
            for r in results))
    if config.baseline_note:
        lines.append(f"**About the baseline:** {config.baseline_note}")
    lines.append("Left: the baseline model. Right: the fine-tuned model. Both use the same "
                 "settings and answer at the same time. Vote for the better answer.")
    return "\n\n".join(lines)


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def build_app(config: DemoConfig, engine: Engine, folder: str | Path) -> gr.Blocks:
    """The Blocks app; `folder` is where votes go when /data is not usable."""
    lim, samp = config.limits, config.sampling
    box = VoteBox(votes_dir(folder), lim.votes_per_minute, lim.max_votes)
    with gr.Blocks(title=config.title, analytics_enabled=False) as demo:
        state = gr.State(new_state())
        gr.Markdown(describe(config))
        with gr.Row():
            left = gr.Chatbot(label="Baseline", height=360, feedback_options=None,
                              buttons=["copy"])
            right = gr.Chatbot(label="Fine-tuned", height=360, feedback_options=None,
                               buttons=["copy"])
        prompt = gr.Textbox(label=f"Prompt (up to {lim.max_prompt_chars} characters)",
                            max_length=lim.max_prompt_chars, lines=2)
        with gr.Row():
            send = gr.Button("Send", variant="primary")
            reset = gr.Button("New conversation")
        with gr.Row():
            buttons = {v: gr.Button(label) for v, label in
                       (("left", "Left is better"), ("right", "Right is better"),
                        ("tie", "Tie"), ("both_bad", "Both bad"))}
        status = gr.Markdown()
        with gr.Accordion("Sampling", open=False):
            temperature = gr.Slider(0.05, lim.max_temperature, value=min(samp.temperature,
                                    lim.max_temperature), step=0.05, label="Temperature")
            top_p = gr.Slider(0.05, 1.0, value=samp.top_p, step=0.05, label="Top-p")
            top_k = gr.Slider(0, 200, value=samp.top_k, step=1, label="Top-k")
            max_new = gr.Slider(1, lim.max_new_tokens, step=1, label="Max new tokens",
                                value=min(samp.max_new_tokens, lim.max_new_tokens))
        with gr.Accordion("Details", open=False):
            details = gr.JSON(label="Last request (as limited by the server)")
        if config.examples:  # filled in by the browser alone: no server function behind it
            pick = gr.Radio(config.examples, label="Prompts from the eval split", value=None)
            pick.change(None, [pick], [prompt], js="(example) => example")
        inputs = [prompt, temperature, top_p, top_k, max_new, state]
        outputs = [left, right, details, state]
        # Send and Enter are one documented endpoint; time_limit ends a stream that runs too
        # long, so one request never holds the model
        gr.on([send.click, prompt.submit], partial(respond, engine), inputs, outputs,
              api_name="generate", time_limit=lim.time_limit_s)
        for verdict, button in buttons.items():
            button.click(_voter(engine, box, verdict), [state], [status, state],
                         api_name=f"vote_{verdict}")
        reset.click(clear, [state], [left, right, details, status, state], api_name="clear")
    demo.queue(default_concurrency_limit=lim.concurrency_limit, max_size=lim.max_queue_size)
    return demo


def documented_endpoints(demo: gr.Blocks) -> dict[int, str]:
    """fn_index -> API name of every function a visitor may call (those in /gradio_api/info)."""
    return {index: fn.api_name for index, fn in demo.fns.items()
            if fn.fn is not None and fn.api_visibility == "public" and fn.api_name}


# ---------------------------------------------------------------------------------------
# Serving
# ---------------------------------------------------------------------------------------
def launch(config_path: str | Path, host: str | None = None, port: int | None = None) -> None:
    """Load the models fixed by the config and serve the demo until stopped."""
    from starlette.middleware import Middleware

    logging.basicConfig(level=logging.INFO)
    config_path = Path(config_path).resolve()
    config = load_config(config_path)
    engine = Engine(config)
    demo = build_app(config, engine, config_path.parent)
    os.environ.pop("GRADIO_ALLOWED_PATHS", None)  # nothing is served from disk, whatever the env
    blocked = [str(config_path.parent), "/data", str(Path.home()), os.getcwd()]
    guard = Middleware(RequestGuard, max_body_bytes=config.limits.max_body_bytes,
                       endpoints=documented_endpoints(demo))
    demo.launch(server_name=host, server_port=port, allowed_paths=[], blocked_paths=blocked,
                show_error=False, max_file_size="1kb", ssr_mode=False, mcp_server=False,
                enable_monitoring=False, run_history=False, footer_links=[],
                app_kwargs={"middleware": [guard]})


def main(argv: list[str] | None = None, default_config: str | Path = CONFIG_FILE) -> None:
    parser = argparse.ArgumentParser(description="DPO Lab side-by-side demo")
    parser.add_argument("--config", default=str(default_config), help="the demo's config file")
    parser.add_argument("--host", default=None, help="address (default: $GRADIO_SERVER_NAME "
                        "or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: 7860)")
    args = parser.parse_args(argv)
    launch(args.config, args.host, args.port)


if __name__ == "__main__":
    main()
