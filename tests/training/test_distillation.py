"""Soft targets: the teacher's probabilities tempered, looked up by ID, and the loss that mixes them with the labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gen_emotion.config.recipes import DistillArgs, load_recipe
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.labels import LABELS
from gen_emotion.data.dataset import EmotionData
from gen_emotion.scoring.prediction_files import write_probabilities
from gen_emotion.training.distillation import distillation_loss, soft_targets, tempered


def test_temperature_pulls_towards_one_half_and_keeps_the_order() -> None:
    p = np.array([[0.01, 0.2, 0.5, 0.7, 0.999]])
    assert tempered(p, 1.0) == pytest.approx(p)
    hot = tempered(p, 2.0)
    assert (np.diff(hot[0]) > 0).all() and hot[0, 2] == pytest.approx(0.5)
    assert (np.abs(hot - 0.5)[0, [0, 1, 3, 4]] < np.abs(p - 0.5)[0, [0, 1, 3, 4]]).all()
    # by hand: logit(0.2) = -1.386; halved, -0.693 -> 1 / (1 + 2) = 1/3
    assert hot[0, 1] == pytest.approx(1 / 3)
    assert tempered(np.array([[0.0, 1.0]]), 1.0)[0] == pytest.approx([1e-6, 1 - 1e-6])  # clipped, never 0 or 1


def test_the_loss_mixes_the_weighted_labels_and_the_teacher() -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 3)
    labels = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    soft = torch.rand(4, 3)
    weight = torch.tensor([1.0, 2.0, 3.0])
    hard = F.binary_cross_entropy_with_logits(logits, labels, pos_weight=weight)
    assert distillation_loss(logits, labels, None, weight, DistillArgs(alpha=0.7)) == pytest.approx(hard.item())
    only_labels = distillation_loss(logits, labels, soft, weight, DistillArgs(alpha=0.0))
    assert only_labels == pytest.approx(hard.item())
    only_teacher = distillation_loss(logits, labels, soft, weight, DistillArgs(alpha=1.0))
    assert only_teacher == pytest.approx(F.binary_cross_entropy_with_logits(logits, soft).item())  # no pos_weight
    # by hand, in numpy: 0.25 * hard + 0.75 * T^2 * mean BCE(sigmoid(z / T), soft) at T = 2
    z, s = logits.numpy() / 2, soft.numpy()
    q = 1 / (1 + np.exp(-z))
    by_hand = 0.25 * hard.item() + 0.75 * 4 * float(np.mean(-(s * np.log(q) + (1 - s) * np.log(1 - q))))
    mixed = distillation_loss(logits, labels, soft, weight, DistillArgs(alpha=0.75, temperature=2.0))
    assert mixed.item() == pytest.approx(by_hand, rel=1e-5)


def test_soft_targets_follow_the_rows_ids(tmp_path: Path) -> None:
    teacher = tmp_path / "teacher.csv"
    probs = np.linspace(0.05, 0.95, 3 * len(LABELS)).reshape(3, len(LABELS))
    write_probabilities(teacher, ["a", "b", "c"], probs)
    data = EmotionData(["c", "a"], ["one", "two"], np.zeros((2, len(LABELS)), dtype=np.int64))
    assert soft_targets(DistillArgs(), data) is None
    got = soft_targets(DistillArgs(teacher=str(teacher)), data)
    assert got == pytest.approx(probs[[2, 0]], abs=1e-6)
    assert soft_targets(DistillArgs(teacher=str(teacher), temperature=3.0), data) == pytest.approx(
        tempered(probs[[2, 0]], 3.0), abs=1e-6
    )
    other = EmotionData(["a", "zz"], ["one", "two"], np.zeros((2, len(LABELS)), dtype=np.int64))
    with pytest.raises(GenEmotionError, match=r"teacher.csv: no teacher probabilities for 1 training row.*'zz'"):
        soft_targets(DistillArgs(teacher=str(teacher)), other)


def test_the_recipe_section_is_checked() -> None:
    assert load_recipe("minilm-l6-cpu", ["distill.teacher=t.csv", "distill.alpha=0.3"]).distill.alpha == 0.3
    with pytest.raises(GenEmotionError, match=r"distill.alpha"):
        load_recipe("minilm-l6-cpu", ["distill.alpha=1.5"])
    with pytest.raises(GenEmotionError, match=r"distill.temperature"):
        load_recipe("minilm-l6-cpu", ["distill.temperature=0"])
    with pytest.raises(GenEmotionError, match=r"distill.teacher trains on soft targets, which task 'tfidf' cannot use"):
        load_recipe("tfidf-logreg", ["distill.teacher=t.csv"])
