"""A comparison report of cross-validated runs and ensembles: per-label F1 and label-support charts
(PNG), a Markdown table per label with each run's wall time and peak memory, and an ``index.html``."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.files import make_folder, open_output, write_text
from gen_emotion.runs.folder import Member, load_member, unique_names
from gen_emotion.scoring.run_metrics import CvMetrics

F1_CHART = "per_label_f1.png"
LOSS_CHART = "training_loss.png"
SUPPORT_CHART = "label_support.png"
MARKDOWN = "report.md"
INDEX = "index.html"


def _figure(width: float, height: float) -> Any:
    """A matplotlib figure on the Agg canvas (no pyplot, no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(figure)
    return figure


def per_label_f1(member: Member) -> np.ndarray:
    """The 11 per-label F1 scores of a run's out-of-fold predictions."""
    table = member.metrics.per_label or {}
    return np.array([float(table.get(label, {}).get("f1", 0.0)) for label in member.label_names])


def f1_chart(members: list[Member], names: list[str], path: Path) -> None:
    """Grouped bars: per-label out-of-fold F1 of each run, macro-F1 in the legend."""
    labels = members[0].label_names
    figure = _figure(max(10.0, 0.9 * len(labels) + 0.4 * len(members)), 5.5 + 0.25 * ((len(members) + 1) // 2))
    axes = figure.add_subplot()
    x = np.arange(len(labels))
    width = 0.8 / len(members)
    for i, (member, name) in enumerate(zip(members, names)):
        label = f"{name} (macro-F1 {float(member.metrics.macro_f1):.3f})"
        axes.bar(x - 0.4 + width * (i + 0.5), per_label_f1(member), width, label=label)
    axes.set_xticks(x, labels, rotation=30, ha="right")
    axes.set_ylim(0, 1)
    axes.set_ylabel("out-of-fold F1")
    axes.set_title("Per-label F1 (out-of-fold, tuned thresholds)")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    figure.tight_layout()
    with open_output(path, binary=True) as handle:
        figure.savefig(handle, format="png")


def support_chart(labels: np.ndarray, path: Path, names: tuple[str, ...]) -> None:
    """Bars: how many training rows carry each label (share of rows on top)."""
    counts = labels.sum(axis=0)
    figure = _figure(max(10.0, 0.6 * len(names)), 4.0)
    axes = figure.add_subplot()
    bars = axes.bar(names, counts, color="#4c72b0")
    for bar, count in zip(bars, counts):
        axes.annotate(
            f"{count / len(labels):.0%}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    axes.set_ylabel("training rows")
    axes.set_title(f"Label support ({len(labels)} training rows)")
    axes.tick_params(axis="x", rotation=30)
    figure.tight_layout()
    with open_output(path, binary=True) as handle:
        figure.savefig(handle, format="png")


def loss_curves(run_dir: Path) -> list[tuple[list[int], list[float]]]:
    """The training-loss curves (step, loss) of a run's folds, from their ``train_log.json`` (none for an ensemble,
    the TF-IDF baseline, or a damaged log, which is skipped)."""
    curves = []
    for log in sorted(Path(run_dir).glob("folds/fold-*/train_log.json")):
        try:
            history = json.loads(log.read_text(encoding="utf-8"))
            points = [(int(e["step"]), float(e["loss"])) for e in history if "loss" in e and "step" in e]
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
        if points:
            curves.append(([p[0] for p in points], [p[1] for p in points]))
    return curves


def loss_chart(members: list[Member], names: list[str], path: Path) -> bool:
    """Each run's training loss against the step, one line per fold; ``False`` when no run has a loss log."""
    curves = [(name, loss_curves(member.run_dir)) for member, name in zip(members, names)]
    if not any(found for _, found in curves):
        return False
    figure = _figure(8, 4)
    axes = figure.add_subplot(1, 1, 1)
    for index, (name, found) in enumerate(curves):
        for k, (steps, losses) in enumerate(found):
            axes.plot(steps, losses, color=f"C{index}", alpha=0.8, label=name if k == 0 else None)
    axes.set_xlabel("step")
    axes.set_ylabel("training loss")
    axes.set_title("Training loss of each fold")
    axes.legend(fontsize=8)
    with open_output(path, binary=True) as handle:
        figure.savefig(handle, format="png")
    return True


def _fmt(value: Any, pattern: str = "{:.4f}") -> str:
    return "-" if value is None else pattern.format(value)


def _seconds(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} s" if value < 100 else f"{value / 60:.1f} min"


def summary_rows(members: list[Member], names: list[str]) -> list[list[str]]:
    """One row per run: headline figures, wall time and peak memory."""
    rows = []
    for member, name in zip(members, names):
        m = member.metrics
        cv = m if isinstance(m, CvMetrics) else None
        rows.append(
            [
                name,
                m.kind,
                _fmt(m.macro_f1),
                _fmt(m.macro_f1_thresholds_cv),
                _fmt(cv and cv.per_fold_macro_f1_std, "± {:.4f}"),
                _fmt(m.micro_f1),
                _fmt(m.jaccard),
                str(cv.folds) if cv and cv.folds is not None else "-",
                _seconds(m.wall_s),
                _fmt(m.peak_rss_mib, "{:.0f} MiB"),
            ]
        )
    return rows


SUMMARY_HEADER = [
    "run",
    "kind",
    "macro-F1",
    "macro-F1 (honest)",
    "fold std",
    "micro-F1",
    "Jaccard",
    "folds",
    "wall time",
    "peak memory",
]


def label_rows(members: list[Member], support: np.ndarray) -> list[list[str]]:
    """One row per label: support, then each run's F1 (the best in bold)."""
    f1 = np.stack([per_label_f1(m) for m in members])
    rows = []
    for j, label in enumerate(members[0].label_names):
        best = f1[:, j].max()
        cells = [f"**{v:.3f}**" if v == best and len(members) > 1 else f"{v:.3f}" for v in f1[:, j]]
        rows.append([label, str(int(support[j])), *cells])
    macro = [f"{float(m.metrics.macro_f1):.3f}" for m in members]
    rows.append(["macro-F1", "", *macro])
    return rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def html_table(header: list[str], rows: list[list[str]]) -> str:
    def cell(text: str, tag: str) -> str:
        bold = text.startswith("**") and text.endswith("**")
        inner = html.escape(text.strip("*") if bold else text)
        return f"<{tag}>{'<b>' + inner + '</b>' if bold else inner}</{tag}>"

    head = "".join(cell(h, "th") for h in header)
    body = "\n".join("<tr>" + "".join(cell(c, "td") for c in row) + "</tr>" for row in rows)
    return f"<table>\n<tr>{head}</tr>\n{body}\n</table>"


def write_report(run_dirs: list[Path], out_dir: Path) -> dict[str, Path]:
    """Write the charts, ``report.md`` and ``index.html`` comparing ``run_dirs``; return their paths."""
    if not run_dirs:
        raise GenEmotionError("report needs at least one run folder")
    members = [load_member(Path(d)) for d in run_dirs]
    rows = {len(m.ids) for m in members}
    if len(rows) > 1:
        raise GenEmotionError(
            f"the runs cover different numbers of training rows ({sorted(rows)}); compare runs of one data set"
        )
    if len({m.label_names for m in members}) > 1:
        raise GenEmotionError("the runs have different label columns; compare runs of one label set")
    names = unique_names(members)
    make_folder(out_dir, "--out")
    support = members[0].labels.sum(axis=0)
    f1_chart(members, names, out_dir / F1_CHART)
    support_chart(members[0].labels, out_dir / SUPPORT_CHART, members[0].label_names)
    has_losses = loss_chart(members, names, out_dir / LOSS_CHART)
    loss_md = [f"![training loss]({LOSS_CHART})"] if has_losses else []
    loss_html = (
        f'<h2>Training loss</h2>\n<img src="{LOSS_CHART}" alt="training loss of each fold">' if has_losses else ""
    )

    label_header = ["label", "support", *names]
    summary, labels = summary_rows(members, names), label_rows(members, support)
    note = (
        "macro-F1 uses per-label thresholds tuned on the same out-of-fold rows (slightly optimistic); "
        "macro-F1 (honest) tunes them on 4/5 of the rows and scores the other 1/5. Wall time and peak memory "
        "are those of training and predicting every fold (for an ensemble, its members')."
    )
    markdown = "\n\n".join(
        [
            "# Out-of-fold comparison",
            markdown_table(SUMMARY_HEADER, summary),
            note,
            "## Per-label F1",
            markdown_table(label_header, labels),
            f"![per-label F1]({F1_CHART})",
            f"![label support]({SUPPORT_CHART})",
            *loss_md,
            "## Runs",
            "\n".join(f"- {name}: `{m.run_dir}`" for name, m in zip(names, members)),
        ]
    )
    write_text(out_dir / MARKDOWN, markdown + "\n")
    run_list = "".join(
        f"<li>{html.escape(n)}: <code>{html.escape(str(m.run_dir))}</code></li>" for n, m in zip(names, members)
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>gen-emotion report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}
img{{max-width:100%}}</style></head><body>
<h1>Out-of-fold comparison</h1>
{html_table(SUMMARY_HEADER, summary)}
<p>{html.escape(note)}</p>
<h2>Per-label F1</h2>
<img src="{F1_CHART}" alt="per-label F1 of each run">
{html_table(label_header, labels)}
<h2>Label support</h2>
<img src="{SUPPORT_CHART}" alt="training rows per label">
{loss_html}
<h2>Runs</h2>
<ul>{run_list}</ul>
</body></html>
"""
    write_text(out_dir / INDEX, page)
    written = (F1_CHART, SUPPORT_CHART, *((LOSS_CHART,) if has_losses else ()), MARKDOWN, INDEX)
    return {name: out_dir / name for name in written}
