"""Soft targets for the classifier (``distill.teacher``): a teacher's probabilities beside the gold labels.

A row's loss is ``(1 - alpha) * BCE_w(z, y) + alpha * T**2 * BCE(z / T, sigmoid(logit(p) / T))``: the classifier's
weighted binary cross-entropy on the gold labels ``y`` (``pos_weight`` as without a teacher) plus, per label, the
cross-entropy between the student's probability and the teacher's ``p``, both tempered by ``T`` (the ``T**2`` keeps
the soft term's gradients the same size as ``T`` changes, as in Hinton et al.'s distillation). The teacher's
probabilities were already shaped by its own weighted loss and thresholds are tuned afterwards, so the soft term
carries no ``pos_weight``. ``gen-emotion distill`` (``evaluation.distill``) writes the teacher file and sets these
fields; any classify run or cv may name one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gen_emotion.config.recipes import DistillArgs
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.data.dataset import EmotionData
from gen_emotion.scoring.prediction_files import read_probabilities, reindex

EPSILON = 1e-6
"""Teacher probabilities are clipped to ``[EPSILON, 1 - EPSILON]`` before their logit is taken."""


def tempered(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``sigmoid(logit(p) / T)``: probabilities pulled towards 0.5 by ``T > 1`` (unchanged at ``T = 1``)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), EPSILON, 1.0 - EPSILON)
    if temperature == 1.0:
        return p
    logits = np.log(p) - np.log1p(-p)
    return 1.0 / (1.0 + np.exp(-logits / temperature))


def soft_targets(settings: DistillArgs, data: EmotionData) -> np.ndarray | None:
    """The tempered teacher probabilities of ``data``'s rows, in their order; ``None`` without a teacher. Error
    naming the file and the first row it lacks: every training row needs a soft target."""
    if settings.teacher is None:
        return None
    path = Path(settings.teacher).expanduser()
    ids, probs = read_probabilities(path, data.label_names)
    known = set(ids)
    missing = [row_id for row_id in data.ids if row_id not in known]
    if missing:
        raise GenEmotionError(
            f"{path}: no teacher probabilities for {len(missing)} training row(s), e.g. ID {missing[0]!r}; "
            "the teacher must have scored the data this run trains on"
        )
    return tempered(reindex(probs, ids, data.ids), settings.temperature)


def distillation_loss(logits: Any, labels: Any, soft: Any | None, pos_weight: Any, settings: DistillArgs) -> Any:
    """The mean loss of a batch (module docstring); the gold labels' weighted BCE alone where ``soft`` is None
    (validation rows, or no teacher)."""
    import torch.nn.functional as F

    hard = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), pos_weight=pos_weight)
    if soft is None:
        return hard
    t = settings.temperature
    teacher = F.binary_cross_entropy_with_logits(logits / t, soft.to(logits.dtype)) * (t * t)
    return (1.0 - settings.alpha) * hard + settings.alpha * teacher
