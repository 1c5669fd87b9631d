"""Per-label probabilities from the greedy pass itself: each label's probability at its place in the output.

A greedy output of the grammar is a row of slots: the first label (or the none text), then each later label
after ``", "``. At a slot the model chose among the choices the grammar still allowed there: the labels after
the previous one, and, at the first slot, the none text. The next-token distribution at the step that wrote
the slot's first character (the model's, under the grammar's mask, as greedy decoding saw it) says how likely
each of them was: a token counts for every allowed choice its text agrees with (shared evenly), and the
allowed choices' shares are renormalised (a token of the slot's prefix that is not yet any one label counts
for all it may start). A label's probability is the largest it had at any slot that allowed
it, so a chosen label has at least its own slot's probability, and a label left out has the chance it had of
being written instead. Only the top-k tokens of a step are known; a choice none of them agrees with gets 0.

This costs one greedy pass with top-k log-probabilities; sampling N outputs costs N decodes of each tweet.
``bench/thresholds.py`` measures both, side by side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from gen_emotion.core.labels import SEPARATOR, LabelSet
from gen_emotion.generation.parsing import parse_many


class Step(NamedTuple):
    """One greedy decoding step: the chosen token's text, and the likeliest tokens' texts with their
    log-probabilities (the chosen token among them)."""

    chosen: str
    top: Sequence[tuple[str, float]]


def branch_probabilities(steps: Sequence[Step], labels: LabelSet) -> np.ndarray:
    """One probability per label of ``labels`` (a ``none_label`` gets the none text's) for one greedy output,
    given as its decoding ``steps``. An output outside the grammar gets its parsed 0/1 labels."""
    # Each step's text was decoded after the token before it (``generate.decode_steps``), so the texts join into the
    # output and a character offset lies in one step: the step that writes a slot's first character is its branch
    # point. Assumed of the tokenizer: that step's rival tokens (its top-k) are read as text, so a token may carry
    # the separator too (" joy", ", joy"), and a token that could start several labels ("s") splits its mass
    # evenly between them, as the later steps that would tell them apart are not read.
    text = "".join(step.chosen for step in steps)
    lead = len(text) - len(text.lstrip())
    answer = text.strip()
    if not labels.is_canonical(answer):
        return parse_many([answer], labels)[0].astype(float)
    targets = labels.targets
    chosen = [] if answer == labels.none_text else answer.split(SEPARATOR)
    starts = [lead + sum(len(name) + len(SEPARATOR) for name in chosen[:i]) for i in range(max(1, len(chosen)))]
    ends = np.cumsum([0] + [len(step.chosen) for step in steps])
    scores = dict.fromkeys(labels.names, 0.0)
    previous = -1
    for slot, start in enumerate(starts):
        allowed = list(targets[previous + 1 :]) + ([labels.none_text] if slot == 0 else [])
        step = int(np.searchsorted(ends, start, side="right")) - 1
        # A share is the model's own next-token mass under the grammar's mask, renormalised over the choices this
        # slot allows (stopping is not one of them); a label keeps its largest share over the slots. Not calibrated
        # (top-k only, renormalised, a max), and a run needs no more: it tunes a per-label threshold on held-out
        # rows (``thresholds``), and the F1 a threshold reaches depends only on how the tweets rank for that label.
        shares = _slot_shares(text[: ends[step]], steps[step].top, text[:start], allowed)
        for choice, share in shares.items():
            column = labels.none_label if choice == labels.none_text else choice
            if column is not None:
                scores[column] = max(scores[column], share)
        if slot < len(chosen):
            previous = targets.index(chosen[slot])
    return np.array([scores[name] for name in labels.names])


def _slot_shares(
    before: str, top: Sequence[tuple[str, float]], slot_prefix: str, allowed: list[str]
) -> dict[str, float]:
    """Each allowed choice's renormalised share of the tokens that could start it at this step."""
    mass = dict.fromkeys(allowed, 0.0)
    for token, logprob in top:
        written = before + token
        if len(written) <= len(slot_prefix):
            continue  # the token ends before the slot starts: it chooses nothing
        agreeing = [choice for choice in allowed if _agrees(written, slot_prefix + choice)]
        for choice in agreeing:
            mass[choice] += math.exp(logprob) / len(agreeing)
    total = sum(mass.values())
    return {choice: value / total for choice, value in mass.items()} if total > 0 else {}


def _agrees(written: str, target: str) -> bool:
    """True when ``written`` can start a grammar string that writes ``target`` next: it is a prefix of it, or it
    is ``target`` followed by the start of a separator."""
    if len(written) <= len(target):
        return target.startswith(written)
    return written.startswith(target) and SEPARATOR.startswith(written[len(target) :])
