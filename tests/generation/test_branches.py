"""Probabilities from the greedy pass's branches (``branches.branch_probabilities``), on decoding steps written
by hand; ``test_generate`` and ``test_vllm_backend`` check the steps the real backends give."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gen_emotion.core.labels import LABELS, SEMEVAL, LabelSet
from gen_emotion.generation.branches import Step, branch_probabilities


def lp(p: float) -> float:
    return math.log(p)


def probs(steps: list[Step], labels: LabelSet = SEMEVAL) -> dict[str, float]:
    return dict(zip(labels.names, branch_probabilities(steps, labels).round(6)))


END = Step("", [("", lp(0.9)), (",", lp(0.1))])  # the end-of-turn token: no label starts there


def test_one_label_gets_its_slots_shares_and_others_theirs():
    first = Step("joy", [("joy", lp(0.5)), ("love", lp(0.3)), ("none", lp(0.1)), ("hello", lp(0.1))])
    p = probs([first, END])
    # "hello" starts no allowed choice: the 0.9 that does is renormalised
    assert p["joy"] == pytest.approx(0.5 / 0.9) and p["love"] == pytest.approx(0.3 / 0.9)
    assert sum(p.values()) == pytest.approx(0.8 / 0.9)  # none's share is no label's
    assert all(p[name] == 0 for name in LABELS if name not in ("joy", "love"))


def test_a_later_slot_allows_only_the_labels_after_the_previous_one_and_each_label_keeps_its_best():
    steps = [
        Step("anger", [("anger", lp(0.6)), ("disgust", lp(0.3)), ("sadness", lp(0.1))]),
        Step(",", [(",", lp(0.8)), ("", lp(0.2))]),
        # anger is not allowed after anger: its 0.5 is dropped and the rest renormalised
        Step(" sadness", [(" sadness", lp(0.2)), (" disgust", lp(0.1)), (" anger", lp(0.5)), (" joy", lp(0.2))]),
        END,
    ]
    p = probs(steps)
    assert p["anger"] == pytest.approx(0.6)
    assert p["sadness"] == pytest.approx(0.4)  # 0.2 / 0.5 at the second slot beats 0.1 at the first
    assert p["disgust"] == pytest.approx(0.3)  # 0.3 at the first slot beats 0.1 / 0.5 at the second
    assert p["joy"] == pytest.approx(0.4)


def test_tokens_shorter_or_longer_than_a_label_count_for_every_label_they_agree_with():
    steps = [
        Step("s", [("s", lp(0.4)), ("sad", lp(0.2)), ("joy,", lp(0.2)), ("surprise", lp(0.2))]),
        Step("adness", [("adness", lp(1.0))]),
        END,
    ]
    p = probs(steps)
    # "s" is the start of sadness and surprise (0.2 each); "joy," is joy followed by the separator's start
    assert p["sadness"] == pytest.approx(0.4) and p["surprise"] == pytest.approx(0.4)
    assert p["joy"] == pytest.approx(0.2)


def test_a_slot_written_after_the_separators_space_is_read_at_the_step_that_starts_the_label():
    steps = [
        Step("fear", [("fear", lp(1.0))]),
        Step(", ", [(", ", lp(1.0))]),
        Step("joy", [("joy", lp(0.7)), ("trust", lp(0.3))]),
        END,
    ]
    p = probs(steps)
    assert p["fear"] == 1.0 and p["joy"] == pytest.approx(0.7) and p["trust"] == pytest.approx(0.3)


def test_none_competes_at_the_first_slot_and_fills_a_none_label_column():
    steps = [Step("none", [("none", lp(0.7)), ("joy", lp(0.2)), ("no", lp(0.1))]), END]
    p = probs(steps)
    assert p["joy"] == pytest.approx(0.2) and sum(p.values()) == pytest.approx(0.2)
    six = LabelSet(("joy", "anger", "neutral"), none_label="neutral")
    steps = [Step("neutral", [("neutral", lp(0.6)), ("joy", lp(0.3)), ("ang", lp(0.1))]), END]
    assert probs(steps, six) == pytest.approx({"joy": 0.3, "anger": 0.1, "neutral": 0.6})


def test_an_output_outside_the_grammar_gets_its_parsed_labels():
    steps = [Step("I feel joy", [("I", lp(0.9))]), END]
    assert branch_probabilities(steps, SEMEVAL).tolist() == [float(n == "joy") for n in LABELS]


def test_a_slot_none_of_whose_tokens_agree_gives_nothing():
    steps = [Step("trust", [("trust", lp(0.4)), ("xyz", lp(0.6))]), END]
    p = probs(steps)
    assert p["trust"] == 1.0
    steps = [Step("trust", [("xyz", lp(0.6))]), END]  # the chosen token is outside the kept ones
    assert not np.any(branch_probabilities(steps, SEMEVAL))
