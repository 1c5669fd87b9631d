"""The studio's charts as Vega-Lite specifications, made with altair here and drawn in the browser by the vendored
vega-embed (``static/vendor``). Each function takes plain figures and returns the spec (a JSON mapping)."""

from __future__ import annotations

from typing import Any

WIDTH = 560


def _alt() -> Any:
    import altair as alt

    return alt


def per_label_chart(per_label: dict[str, Any], thresholds: dict[str, float], names: tuple[str, ...]) -> dict:
    """Each label's F1 (bars, support and precision/recall in the tooltip) and, where tuned, its threshold
    (a tick on the same 0-1 scale)."""
    alt = _alt()
    values = []
    for name in names:
        entry = per_label.get(name) if isinstance(per_label.get(name), dict) else {}
        values.append(
            {
                "label": name,
                "f1": entry.get("f1"),
                "precision": entry.get("precision"),
                "recall": entry.get("recall"),
                "support": entry.get("support"),
                "threshold": thresholds.get(name),
            }
        )
    base = alt.Chart(alt.Data(values=values)).encode(x=alt.X("label:N", sort=list(names), title=None))
    bars = base.mark_bar(color="#4c72b0").encode(
        y=alt.Y("f1:Q", scale=alt.Scale(domain=[0, 1]), title="F1"),
        tooltip=["label:N", "f1:Q", "precision:Q", "recall:Q", "support:Q", "threshold:Q"],
    )
    support = base.mark_text(dy=-6, fontSize=10, color="#555").encode(y="f1:Q", text="support:Q")
    layers = [bars, support]
    if any(v["threshold"] is not None for v in values):
        layers.append(
            base.mark_tick(color="#dd8452", thickness=3, size=18).encode(
                y="threshold:Q", tooltip=["label:N", "threshold:Q"]
            )
        )
    return alt.layer(*layers).properties(width=WIDTH, height=220).to_dict()


def curves_chart(points: list[dict[str, Any]]) -> dict:
    """The training curves: one panel per figure (loss, eval_loss, eval_macro_f1), one line per training."""
    alt = _alt()
    chart = (
        alt.Chart(alt.Data(values=points))
        .mark_line(point=alt.OverlayMarkDef(size=18))
        .encode(
            x=alt.X("step:Q", title="step"),
            y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)),
            color=alt.Color("series:N", title="training"),
            tooltip=["series:N", "figure:N", "step:Q", "value:Q"],
        )
        .properties(width=WIDTH, height=160)
        .facet(row=alt.Row("figure:N", title=None))
        .resolve_scale(y="independent")
    )
    return chart.to_dict()


def compare_chart(values: list[dict[str, Any]], names: tuple[str, ...]) -> dict:
    """Per-label F1 of several folders side by side: ``values`` rows ``{label, folder, f1}``."""
    alt = _alt()
    chart = (
        alt.Chart(alt.Data(values=values))
        .mark_bar()
        .encode(
            x=alt.X("label:N", sort=list(names), title=None),
            xOffset="folder:N",
            y=alt.Y("f1:Q", scale=alt.Scale(domain=[0, 1]), title="F1"),
            color=alt.Color("folder:N", legend=alt.Legend(orient="bottom", columns=1)),
            tooltip=["folder:N", "label:N", "f1:Q"],
        )
        .properties(width=WIDTH + 120, height=240)
    )
    return chart.to_dict()


def probability_chart(values: list[dict[str, Any]]) -> dict:
    """Try it: each text's probability per label (bars), the labels decided in a darker colour; ``values`` rows
    ``{text, label, probability, decided}``."""
    alt = _alt()
    chart = (
        alt.Chart(alt.Data(values=values))
        .mark_bar()
        .encode(
            y=alt.Y("label:N", sort=None, title=None),
            x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color(
                "decided:N", scale=alt.Scale(domain=["yes", "no"], range=["#c44e52", "#bbbbbb"]), title="decided"
            ),
            tooltip=["label:N", "probability:Q", "decided:N"],
        )
        .properties(width=360, height=180)
        .facet(row=alt.Row("text:N", title=None, header=alt.Header(labelAngle=0, labelAlign="left", labelLimit=600)))
    )
    return chart.to_dict()
