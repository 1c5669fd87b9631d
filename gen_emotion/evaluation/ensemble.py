"""Ensembles of cross-validated runs: average their out-of-fold and test probabilities (optionally
weighted by each member's out-of-fold macro-F1), stack them (a logistic regression per label over all
members' probabilities, cross-validated on the out-of-fold rows), or take a vote of their 0/1 predictions
when a member has no probabilities; then tune per-label thresholds on the combined out-of-fold scores.

An ensemble folder has the same files as a cv run folder (``oof_metrics.json``, ``oof_labels.csv``,
``oof_predictions.csv``, ``test_predictions.csv``, ``submission.csv``, ``thresholds.json``, and the
probability files when it averaged or stacked probabilities; one writer, ``folder.write_out_of_fold``), so it can be
reported or ensembled again (``folder.load_member`` reads both). Its honest figure (``macro_f1_thresholds_cv``) splits
its rows with its first member's seed, as that member's own figure did; it records the seed as its ``seed``.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.files import make_folder, write_json
from gen_emotion.runs.folder import (
    STACKER,
    Member,
    OutOfFold,
    load_member,
    unique_names,
    write_folder_metrics,
    write_out_of_fold,
)
from gen_emotion.runs.locks import writing_folder
from gen_emotion.scoring.metrics import macro_f1
from gen_emotion.scoring.prediction_files import reindex
from gen_emotion.scoring.run_metrics import EnsembleMetrics
from gen_emotion.scoring.thresholds import apply_thresholds, tune_thresholds


def _reorder(values: np.ndarray | None, ids: list[str], order: list[str]) -> np.ndarray | None:
    if values is None:
        return None
    return reindex(values, ids, order)


def align_members(members: list[Member]) -> None:
    """Put every member's rows in the first member's order; error unless all cover the same IDs with the
    same gold labels (out-of-fold) and the same test IDs."""
    if len(members) < 2:
        raise GenEmotionError("an ensemble needs at least two run folders")
    first = members[0]
    for m in members[1:]:
        if m.label_names != first.label_names:
            raise GenEmotionError(
                f"{m.run_dir} and {first.run_dir} have other label columns ({', '.join(m.label_names)} against "
                f"{', '.join(first.label_names)}); ensemble runs of the same labels"
            )
        for what, mine, theirs in (("training", m.ids, first.ids), ("test", m.test_ids, first.test_ids)):
            missing, extra = set(theirs) - set(mine), set(mine) - set(theirs)
            if missing or extra:
                example = sorted(missing or extra)[0]
                raise GenEmotionError(
                    f"{m.run_dir} and {first.run_dir} cover different {what} IDs ({len(missing)} missing, "
                    f"{len(extra)} extra, e.g. {example!r}); ensemble runs of the same data"
                )
        m.labels = _reorder(m.labels, m.ids, first.ids)
        m.oof_pred = _reorder(m.oof_pred, m.ids, first.ids)
        m.oof_probs = _reorder(m.oof_probs, m.ids, first.ids)
        m.test_pred = _reorder(m.test_pred, m.test_ids, first.test_ids)
        m.test_probs = _reorder(m.test_probs, m.test_ids, first.test_ids)
        m.ids, m.test_ids = list(first.ids), list(first.test_ids)
        if not np.array_equal(m.labels, first.labels):
            raise GenEmotionError(f"{m.run_dir} and {first.run_dir} have different gold labels for the same IDs")


def member_weights(members: list[Member], weighted: bool) -> np.ndarray:
    """Equal weights, or each member's out-of-fold macro-F1, normalised to sum to one."""
    raw = np.array([float(m.metrics.macro_f1) for m in members]) if weighted else np.ones(len(members))
    if raw.sum() <= 0:
        raw = np.ones(len(members))
    return raw / raw.sum()


def combine(members: list[Member], weights: np.ndarray) -> tuple[str, np.ndarray, np.ndarray]:
    """``(mode, oof_scores, test_scores)``: the weighted mean of the probabilities when every member has
    them (``average``), else the weighted share of members voting for each label (``vote``)."""
    if all(m.has_probs for m in members):
        mode, oof, test = "average", [m.oof_probs for m in members], [m.test_probs for m in members]
    else:
        mode, oof, test = "vote", [m.oof_pred for m in members], [m.test_pred for m in members]
    oof_scores = np.tensordot(weights, np.stack(oof).astype(np.float64), axes=1)
    test_scores = np.tensordot(weights, np.stack(test).astype(np.float64), axes=1)
    return mode, np.clip(oof_scores, 0.0, 1.0), np.clip(test_scores, 0.0, 1.0)


def stack(
    members: list[Member], c: float = 0.1, folds: int = 5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Stacked ``(oof_scores, test_scores, stacker)``: per label, a logistic regression over every member's 11
    log-odds (so one label's score can use the others', e.g. joy against sadness). Its out-of-fold scores
    come from ``folds``-fold cross-validation over the out-of-fold rows, so no row is scored by a
    meta-model that saw it; the test scores from one fitted on all of them, which ``stacker`` holds
    (``apply_stacker`` scores new rows with it, as ``predict`` does)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.multioutput import MultiOutputClassifier

    if not all(m.has_probs for m in members):
        raise GenEmotionError("stacking needs probabilities from every run; use the average or a vote")
    x, y = stacker_features([m.oof_probs for m in members]), members[0].labels
    if (y.sum(axis=0) < folds).any() or ((1 - y).sum(axis=0) < folds).any():
        raise GenEmotionError(f"stacking needs at least {folds} positive and negative rows of every label")
    model = MultiOutputClassifier(LogisticRegression(C=c, class_weight="balanced", max_iter=2000))
    split = KFold(folds, shuffle=True, random_state=seed)
    oof = np.column_stack([p[:, 1] for p in cross_val_predict(model, x, y, cv=split, method="predict_proba")])
    model.fit(x, y)
    stacker = {
        "coef": [e.coef_[0].tolist() for e in model.estimators_],
        "intercept": [float(e.intercept_[0]) for e in model.estimators_],
        "note": "per label: sigmoid(log-odds of every member's probabilities, member by member, . coef + intercept)",
    }
    return oof, apply_stacker(stacker, [m.test_probs for m in members]), stacker


def stacker_features(probs: list[np.ndarray]) -> np.ndarray:
    """The stacker's input: every member's probabilities as log-odds (clipped to 1e-4 .. 1 - 1e-4), side by side."""
    clipped = [np.clip(p, 1e-4, 1 - 1e-4) for p in probs]
    return np.hstack([np.log(p / (1 - p)) for p in clipped])


def apply_stacker(stacker: dict[str, Any], probs: list[np.ndarray]) -> np.ndarray:
    """The stacked scores of rows whose members' probabilities are ``probs`` (one array per member)."""
    from scipy.special import expit

    x = stacker_features(probs)
    try:
        coef, intercept = np.asarray(stacker["coef"], dtype=np.float64), np.asarray(stacker["intercept"], np.float64)
    except (KeyError, TypeError, ValueError):
        raise GenEmotionError("the stacker is damaged: expected its coef and intercept per label") from None
    if coef.shape != (len(intercept), x.shape[1]):
        raise GenEmotionError(f"the stacker expects {coef.shape[-1]} features per row, the members give {x.shape[1]}")
    # the same operations as LogisticRegression.predict_proba, label by label
    return np.column_stack([expit((x @ coef[j : j + 1].T + intercept[j]).ravel()) for j in range(len(intercept))])


def evaluate(members: list[Member], weighted: bool, stacked: bool = False) -> dict[str, Any]:
    """Combine aligned members (``stacked``: with ``stack``) and tune thresholds on the combined out-of-fold
    scores (nothing written)."""
    weights = member_weights(members, weighted and not stacked)
    stacker = None
    if stacked:
        mode, (oof, test, stacker) = "stack", stack(members)
    else:
        mode, oof, test = combine(members, weights)
    y = members[0].labels
    thresholds = tune_thresholds(y, oof)
    return {
        "mode": mode,
        "weights": weights,
        "oof": oof,
        "test": test,
        "thresholds": thresholds,
        "oof_pred": apply_thresholds(oof, thresholds),
        "test_pred": apply_thresholds(test, thresholds),
        "stacker": stacker,
    }


def run_ensemble(run_dirs: list[Path], out_dir: Path, weighted: bool = False, stacked: bool = False) -> EnsembleMetrics:
    """Ensemble the cv runs in ``run_dirs`` into ``out_dir``; return its metrics."""
    if weighted and stacked:
        raise GenEmotionError("choose --weighted (a weighted average) or --stack, not both")
    started = time.perf_counter()
    members = [load_member(Path(d)) for d in run_dirs]
    align_members(members)
    result = evaluate(members, weighted, stacked)
    with writing_folder(out_dir):  # one writer per ensemble folder
        return write_ensemble(members, result, out_dir, weighted, started)


def write_ensemble(
    members: list[Member], result: dict[str, Any], out_dir: Path, weighted: bool, started: float
) -> EnsembleMetrics:
    """Write an ensemble folder from ``evaluate``'s result."""
    make_folder(out_dir, "--out")
    first = members[0]
    has_probabilities, stacked = result["mode"] in ("average", "stack"), result["mode"] == "stack"
    seed = first.metrics.seed or 0  # a member from before the seed was recorded: 0, as its figure had
    layout = OutOfFold(
        first.ids,
        first.labels,
        result["oof"],
        first.test_ids,
        result["test"],
        result["thresholds"],
        first.label_names,
        first.id_column,
        probabilities=has_probabilities,
        tuned=True,
        seed=seed,
    )
    figures = write_out_of_fold(out_dir, layout)
    if result["stacker"] is not None:
        write_json(out_dir / STACKER, result["stacker"])
    names = unique_names(members)
    members_info = [
        {
            "name": name,
            "run_dir": str(m.run_dir),
            "macro_f1": m.metrics.macro_f1,
            "weight": float(w),
            "has_probabilities": m.has_probs,
        }
        for name, m, w in zip(names, members, result["weights"])
    ]
    metrics = EnsembleMetrics(
        name=f"ensemble({'+'.join(names)}{', weighted' if weighted else ''}{', stacked' if stacked else ''})",
        kind="ensemble",
        mode=result["mode"],
        weighted=weighted,
        has_probabilities=has_probabilities,
        seed=seed,
        members=members_info,
        **figures,
        best_member_macro_f1=max(float(m.metrics.macro_f1) for m in members),
        test_rows=len(first.test_ids),
        wall_s=round(sum(float(m.metrics.wall_s or 0.0) for m in members) + time.perf_counter() - started, 1),
        peak_rss_mib=max(float(m.metrics.peak_rss_mib or 0.0) for m in members),
        note="wall_s and peak_rss_mib are the members' (their training and prediction) plus combining; "
        "macro_f1 tunes thresholds on the same out-of-fold rows it scores, macro_f1_thresholds_cv does not.",
    )
    write_folder_metrics(out_dir, metrics)
    return metrics


def search_ensembles(run_dirs: list[Path], out_dir: Path) -> EnsembleMetrics:
    """Try every subset of two or more runs, averaged plainly, weighted and stacked; write the one with
    the best out-of-fold macro-F1 to ``out_dir`` and return its metrics plus every candidate's figure
    (``candidates``).

    The choice is made on the same out-of-fold rows that score it, so its figure is optimistic; compare
    ``macro_f1_thresholds_cv`` for an honest one.
    """
    started = time.perf_counter()
    members = [load_member(Path(d)) for d in run_dirs]
    align_members(members)
    candidates, best = [], None
    for size in range(2, len(members) + 1):
        for subset in itertools.combinations(range(len(members)), size):
            chosen = [members[i] for i in subset]
            ways = [(False, False), (True, False)] + ([(False, True)] if all(m.has_probs for m in chosen) else [])
            for weighted, stacked in ways:
                result = evaluate(chosen, weighted, stacked)
                f1 = macro_f1(chosen[0].labels, result["oof_pred"])
                names = [members[i].name for i in subset]
                candidates.append({"members": names, "weighted": weighted, "stacked": stacked, "macro_f1": f1})
                if best is None or f1 > best[0] + 1e-12:
                    best = (f1, chosen, result, weighted)
    _, chosen, result, weighted = best
    with writing_folder(out_dir):
        metrics = replace(write_ensemble(chosen, result, out_dir, weighted, started), candidates=candidates)
        write_folder_metrics(out_dir, metrics)
    return metrics
