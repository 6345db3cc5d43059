"""Chat: a fine-tuned run and its baseline answer the same message side by side; votes become
pairs for the next run.

One ModelCache per server (st.cache_resource) holds the weights; `keep_only` evicts what the
current pair of models does not need, so a message never reloads weights. Both sides stream at
once: one mixed-adapter batch when they share base weights, two threads otherwise.
"""

from __future__ import annotations

import random
import time
from dataclasses import replace

import streamlit as st

from dpo_core.chat.cache import ModelCache
from dpo_core.chat.side_by_side import PairStream, chat_format, format_warning, render_chat
from dpo_core.errors import DPOLabError
from dpo_core.training.runs import list_runs
from dpo_core.workspace import get_workspace
from pages import _chat_views as views
from pages._widgets import ensure_routed, errors_shown, store, workspace

ensure_routed()

S = st.session_state
STREAM_EVERY_S = 0.1  # how often the two growing answers are redrawn


@st.cache_resource(show_spinner=False)
def model_cache(home: str) -> ModelCache:
    """The one model cache of this server for a workspace."""
    return ModelCache(get_workspace(home))


def conversation(key: tuple) -> dict:
    """This model pair's conversation; another pair (or format) starts a new one."""
    chat = S.get("chat")
    if chat is None or chat["key"] != key:
        chat = S["chat"] = {"key": key, "turns": []}
    return chat


def histories(turns: list[dict]) -> dict[str, list[tuple[str, str]]]:
    """Each side's own history: (user message, that side's answer) per turn."""
    return {side: [(t["message"], t[side]["text"]) for t in turns] for side in ("left", "right")}


def answer(message: str, sides: dict, fmt, settings, turns: list[dict], anonymous: bool) -> dict:
    """Stream both answers at once into two columns; returns the new turn."""
    turn = {"message": message, "anonymous": anonymous,
            "swap": anonymous and random.random() < 0.5}
    hist = histories(turns)
    with st.chat_message("user"):
        st.markdown(message)
    texts = [render_chat(sides[side], hist[side], message, fmt) for side in ("left", "right")]
    live = PairStream(sides["left"], sides["right"], texts, settings, fmt)
    order, names = views.side_names(turn, S["chat"]["key"][:2])
    boxes = {}
    for col, side, name in zip(st.columns(2), order, names, strict=True):
        with col:
            st.markdown(f"**{name}**")
            with st.chat_message("assistant"):
                boxes[side] = st.empty()
            boxes[side + ":caption"] = st.empty()
    pair_caption = st.empty()
    while live.running:
        for row, text in enumerate(live.visible()):
            boxes[("left", "right")[row]].markdown(text + " ▌")
        time.sleep(STREAM_EVERY_S)
    replies = dict(zip(("left", "right"), live.wait(), strict=True))
    turn["batched"] = live.batched  # known only now: a batch that fails runs the sides apart
    for side, reply in replies.items():
        turn[side] = reply.to_dict()
        boxes[side].markdown(reply.text)
        views.show_timing(turn, side, boxes[side + ":caption"])
    if views.pair_timing(turn):
        pair_caption.caption(views.pair_timing(turn), help=views.TIMING_HELP)
    return turn


st.title("Chat")
st.caption("Both models answer each message with the same settings and seed. Vote under an "
           "exchange: a preference becomes a pair for the next run.")
db = store()
with errors_shown():
    specs = views.pick_models(list_runs(db, status="completed"))
    if specs is None:
        st.stop()
    cache = model_cache(str(workspace().home))
    cache.keep_only(list(specs))
    with st.spinner("Loading the models (once)..."):
        sides = {"left": cache.get(specs[0]), "right": cache.get(specs[1])}
    run_format = chat_format(sides["left"], sides["right"])
    fmt = views.pick_format(run_format)
    warning = format_warning(run_format, fmt)
    if warning:
        st.warning(warning)
    settings = views.sampling_settings()
    cols = st.columns([2, 1], vertical_alignment="bottom")
    with cols[0]:
        target = views.vote_target(db)
    anonymous = cols[1].toggle("Anonymous (A/B until the vote)", key="chat_anonymous",
                               persist_state=views.KEEP)

    chat = conversation((*specs, fmt.label))
    turns = chat["turns"]
    ctx = {"store": db, "dataset": target, "format": fmt, "settings": settings,
           "histories": histories(turns)}
    for i, turn in enumerate(turns):
        views.show_turn(i, turn, specs)
        views.vote_box(i, turn, specs, ctx)
        st.divider()

    buttons = st.columns(6)
    if turns and buttons[0].button("Regenerate", icon=":material/refresh:",
                                   help="Answer the last message again with the next seed."):
        last = turns.pop()
        S["chat_pending"] = (last["message"], last.get("attempt", 0) + 1)
        st.rerun()
    if turns and buttons[1].button("Clear", icon=":material/delete:"):
        turns.clear()
        st.rerun()

    typed = st.chat_input("Message both models")
    pending = S.pop("chat_pending", None) or ((typed, 0) if typed else None)
    if pending:
        message, attempt = pending
        try:
            turn = answer(message, sides, fmt, replace(settings, seed=settings.seed + attempt),
                          turns, anonymous)
        except DPOLabError:
            raise  # errors_shown says what was wrong and the fix
        except Exception as exc:  # a model that cannot render or generate: say so, keep going
            st.error(f"Generation failed: {exc}\n\n**Fix:** check the prompt format and the "
                     "models, or try another pair.")
            st.stop()
        turns.append({**turn, "attempt": attempt})
        st.rerun()
