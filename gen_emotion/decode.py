"""Turn generated text back into an 11-way 0/1 label vector.

Constrained generation always writes the canonical form (``anger, disgust`` or ``none``), but
the parser also reads what unconstrained models write: any order or case, lists in Python or
JSON syntax, other separators, adjective forms and small misspellings. It never raises.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

import numpy as np

from gen_emotion.labels import LABELS, NUM_LABELS

END_OF_TURN_TOKENS: tuple[str, ...] = (
    "<|im_end|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|endoftext|>",
    "<end_of_turn>",
    "<|end|>",
    "</s>",
)
"""Chat-template end markers: everything from the first of them on is ignored."""

ALIASES: dict[str, str] = {
    "angry": "anger",
    "angered": "anger",
    "anticipate": "anticipation",
    "anticipated": "anticipation",
    "anticipating": "anticipation",
    "disgusted": "disgust",
    "disgusting": "disgust",
    "afraid": "fear",
    "scared": "fear",
    "fearful": "fear",
    "frightened": "fear",
    "joyful": "joy",
    "joyous": "joy",
    "happy": "joy",
    "happiness": "joy",
    "loving": "love",
    "loved": "love",
    "optimistic": "optimism",
    "pessimistic": "pessimism",
    "sad": "sadness",
    "surprised": "surprise",
    "surprising": "surprise",
    "trusting": "trust",
    "trusted": "trust",
    "optimist": "optimism",
    "pessimist": "pessimism",
}
"""Word forms that name a label."""

NOT_MISSPELLINGS: frozenset[str] = frozenset(
    {
        "acer",
        "adler",
        "after",
        "agar",
        "aged",
        "ages",
        "alder",
        "alter",
        "amber",
        "amer",
        "anders",
        "andes",
        "anew",
        "ange",
        "angel",
        "angela",
        "angelo",
        "angels",
        "angie",
        "angle",
        "angled",
        "anglers",
        "angles",
        "anglo",
        "angst",
        "angus",
        "anne",
        "annex",
        "answer",
        "ante",
        "anwar",
        "asher",
        "avenger",
        "badger",
        "banged",
        "banger",
        "bangor",
        "banker",
        "banner",
        "banter",
        "brunt",
        "brush",
        "bust",
        "cancer",
        "changer",
        "crest",
        "crush",
        "crust",
        "crusty",
        "dagger",
        "dancer",
        "danger",
        "dangers",
        "digest",
        "discuss",
        "disguise",
        "disrupt",
        "distrust",
        "dust",
        "eager",
        "engel",
        "enter",
        "ernst",
        "faust",
        "finger",
        "frost",
        "fruit",
        "ginger",
        "granger",
        "grunt",
        "gust",
        "hangar",
        "hanged",
        "hanger",
        "hangers",
        "hardness",
        "harness",
        "hunger",
        "infer",
        "inner",
        "inter",
        "jagger",
        "just",
        "lager",
        "lander",
        "lange",
        "larger",
        "linger",
        "longer",
        "lust",
        "madness",
        "manager",
        "manger",
        "manner",
        "must",
        "niger",
        "optimize",
        "optimum",
        "optimus",
        "participation",
        "range",
        "ranged",
        "ranger",
        "rangers",
        "ranges",
        "rest",
        "ringer",
        "roger",
        "ruse",
        "rush",
        "russ",
        "rust",
        "rusty",
        "singer",
        "strut",
        "sunrise",
        "tanker",
        "tanner",
        "test",
        "thrust",
        "thus",
        "tiger",
        "toast",
        "tout",
        "tract",
        "trait",
        "trash",
        "treat",
        "trent",
        "tres",
        "tris",
        "trish",
        "trot",
        "trout",
        "truce",
        "truck",
        "true",
        "truly",
        "trump",
        "trunk",
        "truss",
        "trustee",
        "truth",
        "twist",
        "under",
        "wager",
        "wander",
        "wenger",
        "winger",
        "wrist",
        "xander",
    }
)
"""Real words within edit distance 2 of a label that must not be read as that label: the words of
4+ letters among the 30,000 most frequent English words (wordfreq) that are that close to a label
of 5+ letters, less the label's own inflections (``surprises``, ``trusts``, ``saddest``...)."""

_FUZZY_TARGETS = tuple(label for label in LABELS if len(label) >= 5)
_MAX_EDITS = 2
_WORD = re.compile(r"[a-z]+")
_INDEX = {label: i for i, label in enumerate(LABELS)}


def _edit_distance(a: str, b: str, limit: int) -> int:
    """Levenshtein distance between ``a`` and ``b``, or ``limit + 1`` once it exceeds ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        if min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1]


@lru_cache(maxsize=4096)
def word_to_label(word: str) -> str | None:
    """The label a lower-case word names (exactly, as a word form, or misspelt), or ``None``."""
    if word in _INDEX:
        return word
    if word in ALIASES:
        return ALIASES[word]
    if word in NOT_MISSPELLINGS or len(word) < 4:
        return None
    best, best_distance = None, _MAX_EDITS + 1
    for label in _FUZZY_TARGETS:
        distance = _edit_distance(word, label, _MAX_EDITS)
        if distance < best_distance:
            best, best_distance = label, distance
    return best


def strip_end_of_turn(text: str) -> str:
    """Cut ``text`` at the first end-of-turn token."""
    cut = len(text)
    for token in END_OF_TURN_TOKENS:
        at = text.find(token)
        if at != -1:
            cut = min(cut, at)
    return text[:cut]


def parse(text: str | None) -> np.ndarray:
    """Parse one generation into an int vector of 11 zeros and ones. Never raises.

    ``none``, ``neutral``, ``no emotion``, empty text and text naming no label all give zeros.
    """
    out = np.zeros(NUM_LABELS, dtype=np.int64)
    if not isinstance(text, str):
        return out
    for word in _WORD.findall(strip_end_of_turn(text).lower()):
        label = word_to_label(word)
        if label is not None:
            out[_INDEX[label]] = 1
    return out


def parse_many(texts: Iterable[str | None]) -> np.ndarray:
    """Parse each text; returns an int array of shape ``(n, 11)``."""
    rows = [parse(text) for text in texts]
    return np.stack(rows) if rows else np.zeros((0, NUM_LABELS), dtype=np.int64)
