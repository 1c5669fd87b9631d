"""The errors page's query: filter a folder's held-out rows (``rows.HeldOutRows``) by label and by kind of
mistake, search their text, sort them by confidence, and cut one page; the same rows as CSV.

Confidence is how sure the model was of the decisions in view: a label's probability where it predicted the
label, one minus it where it did not; over the chosen label, or (none chosen) the labels the row got wrong (all
its labels where it got none wrong), the largest. Rows without probabilities have none.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.studio.rows import HeldOutRows

KINDS = {
    "all": "every row",
    "wrong": "rows with a mistake",
    "fp": "false positives (predicted, not gold)",
    "fn": "false negatives (gold, not predicted)",
    "right": "rows without a mistake",
}
SORTS = {"id": "file order", "confidence": "most confident first", "-confidence": "least confident first"}
PER_PAGE = (25, 50, 100, 200)


class BadQuery(GenEmotionError):
    """A query parameter the page does not take (answered 400)."""


@dataclass
class Query:
    label: str = ""
    kind: str = "all"
    q: str = ""
    sort: str = "id"
    page: int = 1
    per: int = 50

    def check(self, rows: HeldOutRows) -> None:
        if self.label and self.label not in rows.names:
            raise BadQuery(f"label={self.label!r}: not one of this folder's labels ({', '.join(rows.names)})")
        if self.kind not in KINDS:
            raise BadQuery(f"kind={self.kind!r}: one of {', '.join(KINDS)}")
        if self.kind != "all" and rows.gold is None:
            raise BadQuery(f"kind={self.kind}: this folder's gold labels are not available ({rows.note})")
        if self.sort not in SORTS:
            raise BadQuery(f"sort={self.sort!r}: one of {', '.join(SORTS)}")
        if self.sort != "id" and rows.probs is None:
            raise BadQuery("sort by confidence: this folder has no probabilities")
        if self.per not in PER_PAGE:
            raise BadQuery(f"per={self.per}: one of {', '.join(map(str, PER_PAGE))}")
        if self.page < 1:
            raise BadQuery(f"page={self.page}: pages start at 1")
        if len(self.q) > 500:
            raise BadQuery("q: at most 500 characters")


def selected(rows: HeldOutRows, query: Query) -> tuple[np.ndarray, np.ndarray | None]:
    """The indices of the rows ``query`` keeps, in its order, and their confidence (None without probabilities)."""
    query.check(rows)
    n = len(rows.ids)
    columns = [rows.names.index(query.label)] if query.label else list(range(len(rows.names)))
    predicted = rows.predicted[:, columns].astype(bool)
    keep = np.ones(n, dtype=bool)
    wrong = None
    if rows.gold is not None:
        gold = rows.gold[:, columns].astype(bool)
        false_pos, false_neg = predicted & ~gold, gold & ~predicted
        wrong = false_pos | false_neg
        keep = {
            "all": keep,
            "wrong": wrong.any(axis=1),
            "fp": false_pos.any(axis=1),
            "fn": false_neg.any(axis=1),
            "right": ~wrong.any(axis=1),
        }[query.kind]
        if query.label and query.kind == "all":
            keep = (predicted | gold).any(axis=1)
    elif query.label:
        keep = predicted.any(axis=1)
    if query.q.strip():
        needle = query.q.strip().lower()
        keep = keep & np.fromiter((needle in text for text in rows.search), dtype=bool, count=n)
    confidence = _confidence(rows, columns, predicted, wrong, bool(query.label))
    index = np.flatnonzero(keep)
    if query.sort != "id" and confidence is not None:
        order = np.argsort(-confidence[index] if query.sort == "confidence" else confidence[index], kind="stable")
        index = index[order]
    return index, confidence


def _confidence(
    rows: HeldOutRows, columns: list[int], predicted: np.ndarray, wrong: np.ndarray | None, one_label: bool
) -> np.ndarray | None:
    if rows.probs is None:
        return None
    probs = rows.probs[:, columns]
    sure = np.where(predicted, probs, 1.0 - probs)
    if one_label or wrong is None:
        return sure.max(axis=1)
    any_wrong = wrong.any(axis=1)
    return np.where(any_wrong, np.where(wrong, sure, -1.0).max(axis=1), sure.max(axis=1))


def row_view(rows: HeldOutRows, i: int, confidence: np.ndarray | None) -> dict[str, Any]:
    """One row as the template shows it: each label's gold, predicted, probability and status (tp, fp, fn)."""
    labels = []
    for j, name in enumerate(rows.names):
        is_pred = bool(rows.predicted[i, j])
        is_gold = None if rows.gold is None else bool(rows.gold[i, j])
        status = (
            "" if is_gold is None else "tp" if is_pred and is_gold else "fp" if is_pred else "fn" if is_gold else ""
        )
        prob = None if rows.probs is None else float(rows.probs[i, j])
        labels.append({"name": name, "pred": is_pred, "gold": is_gold, "prob": prob, "status": status})
    return {
        "id": rows.ids[i],
        "text": rows.texts[i] if rows.texts is not None else None,
        "output": rows.outputs[i] if rows.outputs is not None else None,
        "gold": None if rows.gold is None else [x["name"] for x in labels if x["gold"]],
        "predicted": [x["name"] for x in labels if x["pred"]],
        "labels": labels,
        "confidence": None if confidence is None else float(confidence[i]),
    }


def page(rows: HeldOutRows, query: Query) -> dict[str, Any]:
    """One page of the rows ``query`` keeps, and how many there are."""
    index, confidence = selected(rows, query)
    pages = max(1, -(-len(index) // query.per))
    if query.page > pages:
        raise BadQuery(f"page={query.page}: there are {pages} page(s) of {len(index)} row(s)")
    start = (query.page - 1) * query.per
    shown = [row_view(rows, int(i), confidence) for i in index[start : start + query.per]]
    return {"rows": shown, "total": len(index), "pages": pages, "all_rows": len(rows.ids)}


def _cell(value: Any) -> str:
    """A CSV cell a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def to_csv(rows: HeldOutRows, query: Query) -> str:
    """Every row ``query`` keeps (all pages): ID, text, gold, predicted, false positives and negatives,
    confidence, each label's probability, the generated text."""
    index, confidence = selected(rows, query)
    out = io.StringIO()
    writer = csv.writer(out)
    header = ["ID", "text", "gold", "predicted", "false_positives", "false_negatives", "confidence"]
    probs = rows.probs is not None
    writer.writerow(header + ([f"p_{name}" for name in rows.names] if probs else []) + ["output"])
    for i in index:
        view = row_view(rows, int(i), confidence)
        fps = [x["name"] for x in view["labels"] if x["status"] == "fp"]
        fns = [x["name"] for x in view["labels"] if x["status"] == "fn"]
        values = [view["id"], view["text"], None if view["gold"] is None else " ".join(view["gold"])]
        values += [" ".join(view["predicted"]), " ".join(fps), " ".join(fns)]
        values += ["" if view["confidence"] is None else f"{view['confidence']:.4f}"]
        values += [f"{x['prob']:.4f}" for x in view["labels"]] if probs else []
        writer.writerow([_cell(v) for v in values + [view["output"]]])
    return out.getvalue()
