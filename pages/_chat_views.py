"""Pieces of the Chat page: model pickers, sampling settings, one exchange with its vote box.

A conversation lives in st.session_state["chat"]: {"key": the model pair and mode, "turns":
[{message, left, right, swap, vote}]}. `left`/`right` are the Reply dicts of the baseline and
the fine-tuned side; `swap` (anonymous mode) shows the right side first; names stay hidden as
"A"/"B" until the turn has a vote.
"""

from __future__ import annotations

import streamlit as st

from dpo_core.chat.sampling import SamplingSettings
from dpo_core.chat.votes import record_vote
from dpo_core.data.datasets import dataset_names
from dpo_core.fields import field_help
from dpo_core.formats import CHAT_FORMAT, CHILDES_FORMAT, PromptFormat
from dpo_core.training.runs import loadable_checkpoints
from pages._widgets import ensure_routed

if __name__ == "__main__":  # Streamlit ran this helper module as a page: never render it
    ensure_routed()

S = st.session_state
# Streamlit drops the state of widgets a run does not draw (any other page): keep the model
# choice and settings for the whole session, so a visit to Home does not reset them.
KEEP = "session"
NEW_DATASET = "+ new dataset"
FORMATS = {"Chat template": CHAT_FORMAT, "Plain text": PromptFormat(),
           "CHILDES (*MOT: / *CHI:)": CHILDES_FORMAT}
VERDICT_LABELS = {"left": "{0} better", "right": "{1} better", "tie": "Tie",
                  "both_bad": "Both bad"}


# ---------------------------------------------------------------------------------------
# Choosing the two models
# ---------------------------------------------------------------------------------------
def run_choices(runs: list[dict]) -> dict[str, tuple[str, str]]:
    """Label -> (fine-tuned spec, base spec): completed runs and their loadable checkpoints."""
    out = {}
    for run in runs:
        base = run["config"].get("model", "")
        name = run["name"] if run["name"] != run["id"] else ""
        out[f"{run['id']} {name}".strip()] = (f"run:{run['id']}", base)
        for ckpt in loadable_checkpoints(run):
            out[f"{run['id']} · {ckpt.name}"] = (str(ckpt), base)
    return out


def pick_models(runs: list[dict]) -> tuple[str, str] | None:
    """(left spec, right spec): a run and its baseline, or any two model specs."""
    choices = run_choices(runs)
    modes = ["A fine-tuned run and its baseline", "Any two models"]
    mode = st.radio("Compare", modes, horizontal=True, key="chat_mode", persist_state=KEEP,
                    index=0 if choices else 1)
    cols = st.columns(2)
    if mode == modes[0]:
        if not choices:
            st.info("No completed runs yet: train one on the Train page, or compare any two "
                    "models.")
            return None
        wanted = S.get("run_id")  # the run other pages point at ("chat with the best run")
        if wanted and S.get("chat_run_from") != wanted:
            S["chat_run_from"] = wanted
            for lab, (spec, _) in choices.items():
                if spec == f"run:{wanted}":
                    S["chat_run"] = lab
        label = cols[1].selectbox("Fine-tuned run (right)", list(choices), key="chat_run",
                                  persist_state=KEEP)
        right, base = choices[label]
        if S.get("chat_base_for") != label:  # default the baseline to this run's base model
            S["chat_base_for"], S["chat_base"] = label, base
        left = cols[0].text_input("Baseline (left)", key="chat_base", persist_state=KEEP,
                                  help="Default: the run's base model; any model spec works.")
    else:
        left = cols[0].text_input("Left model", "builtin:tiny", key="chat_left",
                                  persist_state=KEEP)
        right = cols[1].text_input("Right model", "builtin:tiny", key="chat_right",
                                   persist_state=KEEP)
    if not left.strip() or not right.strip():
        st.info("Name both models (a folder, a hub id, run:<id> or a builtin).")
        return None
    return left.strip(), right.strip()


def sampling_settings() -> SamplingSettings:
    """The sampling settings both sides share."""
    help_of = field_help(SamplingSettings)
    with st.expander("Sampling settings (both sides)"):
        c = st.columns(4)
        greedy = c[0].toggle("Greedy", key="chat_greedy", help=help_of["greedy"],
                             persist_state=KEEP)
        seed = c[1].number_input("Seed", 0, 2**31 - 1, 0, key="chat_seed", help=help_of["seed"],
                                 persist_state=KEEP)
        max_new = c[2].number_input("Max new tokens", 1, 1024, 64, key="chat_max_new",
                                    help=help_of["max_new_tokens"], persist_state=KEEP)
        rep = c[3].number_input("Repetition penalty", 0.5, 2.0, 1.1, 0.05, key="chat_rep",
                                help=help_of["repetition_penalty"], persist_state=KEEP)
        c = st.columns(4)
        temp = c[0].slider("Temperature", 0.05, 2.0, 0.7, 0.05, key="chat_temp",
                           disabled=greedy, help=help_of["temperature"], persist_state=KEEP)
        top_p = c[1].slider("Top-p", 0.05, 1.0, 0.95, 0.05, key="chat_top_p", disabled=greedy,
                            help=help_of["top_p"], persist_state=KEEP)
        top_k = c[2].number_input("Top-k", 0, 1000, 50, key="chat_top_k", disabled=greedy,
                                  help=help_of["top_k"], persist_state=KEEP)
        ngram = c[3].number_input("No-repeat n-gram size", 0, 10, 0, key="chat_ngram",
                                  help=help_of["no_repeat_ngram_size"], persist_state=KEEP)
    return SamplingSettings(temperature=float(temp), top_p=float(top_p), top_k=int(top_k),
                            max_new_tokens=int(max_new), repetition_penalty=float(rep),
                            no_repeat_ngram_size=int(ngram), greedy=greedy, seed=int(seed))


def pick_format(run_format: PromptFormat) -> PromptFormat:
    """The run's own format by default; another one on request."""
    options = [f"The run's format ({run_format.label})", *FORMATS]
    label = st.selectbox("Prompt format", options, key="chat_format", persist_state=KEEP)
    return run_format if label == options[0] else FORMATS[label]


def vote_target(db) -> str:
    """The dataset that preference votes write their pairs to."""
    names = dataset_names(db)
    cols = st.columns(2)
    picked = cols[0].selectbox("Votes become pairs in", [NEW_DATASET, *names],
                               key="chat_dataset", persist_state=KEEP)
    if picked != NEW_DATASET:
        return picked
    return cols[1].text_input("New dataset name", "chat-votes", key="chat_new_dataset",
                              persist_state=KEEP).strip()


# ---------------------------------------------------------------------------------------
# One exchange: the message, both answers, timings, the vote
# ---------------------------------------------------------------------------------------
def side_names(turn: dict, specs: tuple[str, str]) -> tuple[list[str], list[str]]:
    """(shown order of sides, their headings): specs, or A/B until an anonymous turn is voted."""
    order = ["right", "left"] if turn.get("swap") else ["left", "right"]
    if not turn.get("anonymous"):
        return order, [f"Left · {specs[0]}", f"Right · {specs[1]}"]
    spec = dict(zip(("left", "right"), specs, strict=True))
    if turn.get("vote"):
        return order, [f"{ab} · {spec[side]}" for ab, side in zip("AB", order, strict=True)]
    return order, ["A", "B"]


TIMING_HELP = "Counted from sending the message; both sides from the same moment."


def timing(reply: dict, batched: bool = False) -> str:
    """One side's speed; its own first-token time only when the sides ran apart."""
    speed = f"{reply.get('tokens_per_s', 0):.1f} tokens/s · {reply.get('new_tokens', 0)} tokens"
    if batched:  # one batch: the shared first-token time is in pair_timing
        return speed
    ttft = "-" if reply.get("ttft_s") is None else f"{reply['ttft_s']:.2f} s"
    return f"first token after {ttft} · {speed}"


def pair_timing(turn: dict) -> str | None:
    """A batched pair's first tokens come out of the same decode step: one time for both."""
    if not turn.get("batched"):
        return None
    ttft = turn["left"].get("ttft_s")
    first = "-" if ttft is None else f"{ttft:.2f} s"
    return f"Both answers were generated together in one batch: first tokens after {first}."


def show_timing(turn: dict, side: str, target=st) -> None:
    target.caption(timing(turn[side], turn.get("batched", False)), help=TIMING_HELP)


def show_turn(i: int, turn: dict, specs: tuple[str, str]) -> None:
    """The user message and both answers in two columns."""
    with st.chat_message("user"):
        st.markdown(turn["message"])
    order, names = side_names(turn, specs)
    for col, side, name in zip(st.columns(2), order, names, strict=True):
        with col:
            st.markdown(f"**{name}**")
            with st.chat_message("assistant"):
                st.markdown(turn[side]["text"] or "_(empty answer)_")
            show_timing(turn, side)
    if pair_timing(turn):
        st.caption(pair_timing(turn), help=TIMING_HELP)


def vote_box(i: int, turn: dict, specs: tuple[str, str], ctx: dict) -> None:
    """Vote on one exchange; a preference (optionally edited) becomes a pair in a dataset."""
    vote = turn.get("vote")
    if vote:
        show_vote(i, vote)
        return
    order, _ = side_names(turn, specs)
    shown = ("A", "B") if turn.get("anonymous") else ("Left", "Right")
    # shown position -> real side; "left better" means the side shown first
    real = dict(zip(("left", "right"), order, strict=True))
    labels = {k: v.format(*shown) for k, v in VERDICT_LABELS.items()}
    picked = st.radio("Which answer is better?", list(labels), format_func=labels.get,
                      horizontal=True, index=None, key=f"chat_vote_{i}")
    if picked is None:
        return
    verdict = real.get(picked, picked)
    edited = None
    if verdict in ("left", "right"):
        better = turn[verdict]["text"]
        edited = st.text_area("Edit the better answer before saving (optional)", better,
                              key=f"chat_edit_{i}_{verdict}")
        edited = None if edited == better else edited
    if st.button("Save vote", key=f"chat_save_{i}", type="primary"):
        result = record_vote(ctx["store"], specs[0], specs[1], turn["message"],
                             turn["left"]["text"], turn["right"]["text"], verdict,
                             dataset=ctx["dataset"], prompt_format=ctx["format"],
                             settings=ctx["settings"], edited_better=edited,
                             history=ctx["histories"][verdict if verdict in ("left", "right")
                                                      else "left"][:i])
        # named as the user saw it: "A" in anonymous mode, never the hidden real side
        turn["vote"] = {"verdict": verdict, "pair_id": result.pair_id,
                        "dataset": result.dataset, "label": labels[picked],
                        "note": result.note}
        st.rerun()


def show_vote(i: int, vote: dict) -> None:
    label = vote.get("label") or VERDICT_LABELS[vote["verdict"]].format("Left", "Right")
    if vote["pair_id"] is None:
        if vote.get("note"):
            st.info(f"Vote saved: {label}. {vote['note']}", icon=":material/info:")
            return
        st.caption(f"Vote saved: {label} (kept as a vote, not a pair).")
        return
    cols = st.columns([3, 1])
    cols[0].success(f"Saved pair {vote['pair_id']} to dataset **{vote['dataset']}** "
                    f"({label}).")
    if cols[1].button("See it in the Data page", key=f"chat_see_{i}"):
        S["dataset"] = vote["dataset"]
        st.switch_page("pages/data.py")
