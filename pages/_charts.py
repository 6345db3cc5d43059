"""Plotly renderers for run metrics: one metric or several runs overlaid, chosen vs rejected pairs,
smoothing, and the export buttons (HTML figure, CSV metrics; PNG via the chart's camera button).

Charts read a `LiveHistory` (TRL's keys verbatim, `eval_loss` for the eval split) and draw at most
MAX_POINTS per line, as plain plotly dicts, so a 5,000-step run draws as fast as a 50-step one.
"""

from __future__ import annotations

import csv
import io

import plotly.graph_objects as go
import streamlit as st

from dpo_core.training.history import LiveHistory
from pages._widgets import ensure_routed

if __name__ == "__main__":  # Streamlit ran this helper module as a page: never render it
    ensure_routed()

MAX_POINTS = 250
PALETTE = ("#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692",
           "#B6E880", "#FF97FF", "#FECB52")
PNG_HINT = "PNG: use the camera button in the chart's toolbar."
Line = tuple[LiveHistory, str]  # (history, key)


def _trace(xs, ys, label: str, color: str, dash: str | None, faint: bool, legend: bool) -> dict:
    return {"type": "scatter", "x": xs, "y": ys, "name": label, "legendgroup": label,
            "mode": "lines", "opacity": 0.3 if faint else 1.0, "showlegend": legend,
            "line": {"color": color, "dash": dash or "solid", "width": 1 if faint else 2}}


def lines_figure(lines: dict[str, Line], title: str, smoothing: float = 0.0,
                 dashes: dict[str, str] | None = None, colors: dict[str, str] | None = None,
                 y_title: str = "") -> dict:
    """One figure (a plain plotly dict: cheap to build), one line per label (a key, or a run).

    With smoothing, the raw line is drawn faint under the smoothed one, as in TensorBoard.
    """
    data = []
    for i, (label, (live, key)) in enumerate(lines.items()):
        if not live.steps.get(key):
            continue
        color = (colors or {}).get(label, PALETTE[i % len(PALETTE)])
        dash = (dashes or {}).get(label)
        xs, ys = live.thinned(key, 0.0, MAX_POINTS)
        data.append(_trace(xs, ys, label, color, dash, faint=bool(smoothing),
                           legend=not smoothing))
        if smoothing:
            xs, ys = live.thinned(key, smoothing, MAX_POINTS)
            data.append(_trace(xs, ys, label, color, dash, faint=False, legend=True))
    layout = {"title": {"text": title}, "height": 300, "hovermode": "x unified",
              "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
              "xaxis": {"title": {"text": "step"}}, "yaxis": {"title": {"text": y_title}},
              "legend": {"orientation": "h", "y": -0.25}}
    return {"data": data, "layout": layout}


def metric_figure(live: LiveHistory, key: str, smoothing: float = 0.0, title: str = "") -> dict:
    """A train metric and its eval counterpart (`eval_<key>`, dashed) on one chart."""
    lines = {key: (live, key)}
    eval_key = key if key.startswith("eval_") else f"eval_{key}"
    if eval_key != key and live.steps.get(eval_key):
        lines[eval_key] = (live, eval_key)
    return lines_figure(lines, title or key, smoothing, dashes={eval_key: "dash"})


def pair_figure(live: LiveHistory, prefix: str, smoothing: float = 0.0) -> dict:
    """`<prefix>/chosen` vs `<prefix>/rejected` (rewards or logps), eval ones dashed."""
    colors = {f"{prefix}/chosen": "#00CC96", f"{prefix}/rejected": "#EF553B",
              f"eval_{prefix}/chosen": "#00CC96", f"eval_{prefix}/rejected": "#EF553B"}
    lines = {k: (live, k) for k in colors if live.steps.get(k)}
    dashes = {k: "dash" for k in lines if k.startswith("eval_")}
    return lines_figure(lines, f"{prefix}: chosen vs rejected", smoothing, dashes, colors)


def compare_figure(histories: dict[str, LiveHistory], key: str, smoothing: float = 0.0) -> dict:
    """The same metric from several runs (label -> history) overlaid."""
    return lines_figure({label: (h, key) for label, h in histories.items()}, key, smoothing)


def has_data(fig: dict) -> bool:
    return any(len(t["x"]) for t in fig["data"])


def show(fig: dict, key: str, empty: str = "Nothing logged yet.") -> None:
    """Draw a figure, or a short caption while it has no data."""
    if has_data(fig):
        st.plotly_chart(fig, key=key, config={"displaylogo": False,
                                              "toImageButtonOptions": {"format": "png"}})
    else:
        st.caption(f"{fig['layout']['title']['text']}: {empty}")


# ---------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------
def metrics_csv(history: dict) -> str:
    """Wide CSV in TRL's shape (a `step` column, one column per key): re-importable as a log."""
    keys = sorted(history)
    table: dict[float, dict[str, float | None]] = {}
    for key in keys:
        for step, value in history[key]:
            table.setdefault(step, {})[key] = value
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["step", *keys])
    for step in sorted(table):
        row = table[step]
        writer.writerow([int(step), *[_cell(row, k) for k in keys]])
    return out.getvalue()


def _cell(row: dict, key: str) -> str:
    if key not in row:
        return ""
    value = row[key]
    return "nan" if value is None else repr(value)


def html(fig: dict) -> str:
    """A standalone HTML page of the figure (plotly.js embedded: opens offline)."""
    return go.Figure(fig).to_html(include_plotlyjs=True)


def export_buttons(fig: dict | None, history, name: str, key: str) -> None:
    """Download the figure as HTML and the metrics as CSV; both are built only on click.

    `history` is a callable returning {key: [(step, value), ...]} (every point, not thinned).
    """
    left, right, hint = st.columns([1, 1, 2])
    if fig is not None:
        left.download_button("Chart as HTML", data=lambda: html(fig), file_name=f"{name}.html",
                             mime="text/html", key=f"{key}-html", on_click="ignore",
                             icon=":material/download:")
    right.download_button("Metrics as CSV", data=lambda: metrics_csv(history()),
                          file_name=f"{name}-metrics.csv", mime="text/csv", key=f"{key}-csv",
                          on_click="ignore", icon=":material/download:")
    hint.caption(PNG_HINT)
