"""The typed figures of a folder: written as the plain dicts were, key for key and in order; read back leniently;
checked where ensembles and reports read them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.labels import LABELS
from gen_emotion.scoring.run_metrics import CvMetrics, EnsembleMetrics, RunMetrics, check_folder_metrics, folder_metrics

PER_LABEL = {label: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 3} for label in LABELS}


def test_a_cv_metrics_file_keeps_its_keys_in_order_and_cuda_only_where_used() -> None:
    metrics = CvMetrics(name="r", task="tfidf", folds=3, seed=42, macro_f1=0.5, per_label=PER_LABEL, peak_rss_mib=9.0)
    keys = list(metrics.to_dict())
    assert keys[:7] == ["name", "kind", "task", "model", "has_probabilities", "folds", "seed"]
    assert keys[7:11] == ["macro_f1", "micro_f1", "jaccard", "rows"]
    assert keys[-4:] == ["note", "data", "finished", "machine"]
    assert "peak_cuda_mib" not in keys and "peak_cuda_reserved_mib" not in keys
    assert metrics.to_dict()["macro_f1_thresholds_cv"] is None  # a cv of votes writes its missing honest figure
    with_cuda = list(CvMetrics(peak_rss_mib=9.0, peak_cuda_mib=100.0).to_dict())
    assert with_cuda.index("peak_cuda_mib") == with_cuda.index("peak_rss_mib") + 1


def test_an_ensemble_writes_its_candidates_and_seed_only_where_it_has_them() -> None:
    plain = EnsembleMetrics(name="e", mode="average", members=[{"name": "a"}], macro_f1=0.5)
    assert "candidates" not in plain.to_dict() and "seed" not in plain.to_dict()
    searched = EnsembleMetrics(seed=7, candidates=[{"macro_f1": 0.5}]).to_dict()
    assert list(searched)[-1] == "candidates"
    assert list(searched).index("seed") == list(searched).index("has_probabilities") + 1


def test_reading_keeps_the_known_keys_and_defaults_the_missing() -> None:
    values = {"recipe": "r", "decision": "thresholds", "from_a_later_version": 1}
    metrics = RunMetrics.from_dict(values)
    assert metrics.decision == "thresholds" and metrics.held_out == {} and metrics.probabilities is None
    assert "from_a_later_version" not in metrics.to_dict()
    written = RunMetrics(recipe="r", held_out={"fold": 0}, decision="0.5", test_rows=3).to_dict()
    assert RunMetrics.from_dict(json.loads(json.dumps(written))).to_dict() == written


def test_the_kind_picks_the_class() -> None:
    assert isinstance(folder_metrics({"kind": "ensemble", "macro_f1": 0.4}), EnsembleMetrics)
    cv = folder_metrics({"macro_f1": 0.4})  # a cv folder from before kind was written
    assert isinstance(cv, CvMetrics) and cv.kind == "cv" and cv.has_probabilities is False


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        ({"macro_f1": "high"}, "damaged: macro_f1 must be a number"),
        ({"wall_s": True}, "damaged: wall_s must be a number"),
        ({"has_probabilities": "yes"}, "damaged: name and has_probabilities"),
        ({"per_label": {"anger": {"f1": 0.5}}}, "damaged: per_label must be a mapping of each of the 11 labels"),
    ],
)
def test_a_damaged_figure_is_one_line_naming_the_file_and_field(damage: dict, match: str) -> None:
    values = {"name": "r", "macro_f1": 0.5, "per_label": PER_LABEL, **damage}
    with pytest.raises(GenEmotionError, match=match) as caught:
        check_folder_metrics(values, Path("cv/oof_metrics.json"))
    assert str(caught.value).startswith("cv/oof_metrics.json: ") and "\n" not in str(caught.value)
    assert check_folder_metrics({"macro_f1": 0.5, "per_label": PER_LABEL}, Path("x")) == {
        "macro_f1": 0.5,
        "per_label": PER_LABEL,
    }
