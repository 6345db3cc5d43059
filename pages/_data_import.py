"""The Data page's import forms: a file or a hub id (its format, encoding and column mapping; all
or nothing, or the good rows with a report of the bad ones; progress while it reads), and CHAT
transcripts made into minimal pairs (with the CHAT clean-ups)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dpo_core.data.importer import BAD_ROWS, FORMATS, import_pairs, parse_mapping
from dpo_core.data.transcripts import CLEAN_UPS, import_transcripts
from dpo_core.errors import DPOLabError
from pages._data_common import S, pick, token_model, tokenizer_for
from pages._widgets import ensure_routed, workspace

if __name__ == "__main__":  # Streamlit ran this helper module as a page: never render it
    ensure_routed()

# The library's import messages name the CLI flags; the page has boxes instead.
CLI_WORDS = (("pass --map prompt=COL,chosen=COL,rejected=COL",
              "fill in Column mapping in the Import form (e.g. prompt=question,chosen=good,"
              "rejected=bad)"),
             ("with --map prompt=COL,chosen=COL,rejected=COL", "mapped in Column mapping"),
             ("Write --map", "Write Column mapping as"),
             ("Fix --map", "Fix Column mapping"),
             ("--map part", "Column mapping part"),
             ("--map", "Column mapping"),
             ("(--encoding, or Encoding in the Import form)", "(Encoding in the Import form)"),
             ("(--encoding)", "(Encoding in the Import form)"),
             ("try --encoding", "set Encoding to"))
ENCODINGS = ["utf-8 (or as its byte-order mark says)", "cp1252", "latin-1", "utf-16",
             "utf-8-sig"]
BAD_ROW_LABELS = {"refuse": "refuse the file (all or nothing)",
                  "skip": "import the good rows, report the bad ones"}


def _page_words(text: str) -> str:
    for cli, page in CLI_WORDS:
        text = text.replace(cli, page)
    return text


def import_form(db) -> None:
    st.subheader("Import")
    kind, text = S.pop("data_import_msg", (None, None))
    if kind:
        getattr(st, kind)(text)
    _report_download()
    with st.form("data_import_form"):
        upload = st.file_uploader("File (CSV, TSV, JSON, JSON Lines, Parquet)", key="data_upload")
        hub = st.text_input("... or a Hugging Face dataset id (needs network)", key="data_hub")
        cols = st.columns(3)
        fmt = cols[0].selectbox("Format", FORMATS, key="data_import_fmt")
        split = cols[1].selectbox("Split", ["train", "eval"], key="data_import_split")
        name = cols[2].text_input("New dataset name", key="data_import_name")
        cols = st.columns(3)
        mapping = cols[0].text_input("Column mapping (optional)", key="data_import_map",
                                     placeholder="prompt=question,chosen=good,rejected=bad")
        encoding = cols[1].selectbox("Encoding", ENCODINGS, key="data_import_encoding",
                                     accept_new_options=True,
                                     help="The text encoding of a CSV/JSON file. A file that is "
                                     "not in it is refused with a hint, never guessed.")
        bad_rows = cols[2].selectbox("Bad rows", BAD_ROWS, key="data_import_bad_rows",
                                     format_func=BAD_ROW_LABELS.get)
        submitted = st.form_submit_button("Import")
    if not submitted:
        return
    source = hub.strip() or None
    if upload is not None:
        path = workspace().cache / "uploads" / upload.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(upload.getvalue())
        source = path
    if source is None:
        st.error("Choose a file or enter a hub dataset id.")
        return
    name = name.strip() or (upload.name.rsplit(".", 1)[0] if upload else hub.split("/")[-1])
    _run_import(db, source, name, fmt if upload else "hub", mapping, split,
                None if encoding.startswith("utf-8 (") else encoding.strip(), bad_rows)


def _run_import(db, source, name: str, fmt: str, mapping: str, split: str,
                encoding: str | None, bad_rows: str) -> None:
    bar = st.progress(0.0, text="Reading ...")
    report = workspace().exports / f"{name}.bad-rows.csv"
    try:
        result = import_pairs(db, source, dataset=name, format=fmt, split=split,
                              mapping=parse_mapping(mapping), encoding=encoding,
                              bad_rows=bad_rows, report=report,
                              progress=lambda f, m: bar.progress(f, text=m))
    except DPOLabError as exc:
        bar.empty()
        st.error(_page_words(exc.message + (f"\n\n**Fix:** {exc.fix}" if exc.fix else "")))
        return
    done = f"Imported {result.count:,} pairs into {result.dataset.name} (shape: {result.shape})."
    if result.skipped:
        done += (f" {result.skipped:,} bad rows were left out; the report lists each one's row, "
                 "field and reason.")
        S["data_import_report"] = result.report
    S["data_import_msg"] = ("success", done)  # shown here, where the user is
    pick(result.dataset.name)
    st.rerun()


def _report_download() -> None:
    report = S.get("data_import_report")
    if report and Path(report).is_file():
        st.download_button("Download the bad-rows report (CSV)", Path(report).read_bytes(),
                           file_name=Path(report).name, key="data_import_report_download")


CLEAN_HELP = {"retracing": "<I want> [/] I want -> I want", "codes": "[+ gram], [*], [?] ...",
              "fillers": "&-um, &+fr, &=laughs", "unintelligible": "xxx, yyy, www",
              "form_markers": "doggie@c -> doggie", "zero": "0 . and 0word"}


def transcripts_form(db) -> None:
    """Transcripts (.cha or '*SPK: text' lines) -> minimal pairs: the child's real reply
    against a length-matched reply from elsewhere (see dpo_core/data/transcripts.py)."""
    st.subheader("Transcripts → minimal pairs")
    kind, text = S.pop("data_transcripts_msg", (None, None))
    if kind:
        getattr(st, kind)(text)
    with st.form("data_transcripts_form"):
        files = st.file_uploader("Transcripts (.cha, .txt)", accept_multiple_files=True,
                                 key="data_transcripts_files")
        cols = st.columns(4)
        name = cols[0].text_input("New dataset name", key="data_transcripts_name")
        match = cols[1].selectbox("Match length in", ["len", "tok"], key="data_transcripts_match",
                                  format_func={"len": "words", "tok": "tokens"}.get)
        child = cols[2].text_input("Child's code", value="CHI", key="data_transcripts_child")
        seed = cols[3].number_input("Seed", value=0, step=1, key="data_transcripts_seed")
        overlap = not st.toggle("No word shared between the adult turn and the rejected reply",
                                key="data_transcripts_no_overlap")
        clean = st.multiselect("CHAT clean-up", list(CLEAN_UPS), key="data_transcripts_clean",
                               format_func=lambda c: f"{c} ({CLEAN_HELP[c]})")
        made = st.form_submit_button("Make pairs")
    if not made:
        return
    if not files or not name.strip():
        st.error("Choose transcript files and name the new dataset.")
        return
    folder = workspace().cache / "uploads" / "transcripts"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for upload in files:
        (folder / upload.name).write_bytes(upload.getvalue())
        paths.append(folder / upload.name)
    try:
        tokenizer = tokenizer_for(token_model()) if match == "tok" else None
        ds, built = import_transcripts(db, paths, dataset=name.strip(), match=match,
                                       overlap=overlap, tokenizer=tokenizer, seed=int(seed),
                                       child=child.strip() or "CHI", clean=clean)
    except DPOLabError as exc:
        st.error(exc.message + (f"\n\n**Fix:** {exc.fix}" if exc.fix else ""))
        return
    S["data_transcripts_msg"] = ("success", f"Made {len(built):,} pairs into {ds.name} "
                                            f"({built.dropped:,} answered turns had no "
                                            "length-matched other reply).")
    pick(ds.name)
    st.rerun()
