"""Turn generated text back into a 0/1 label vector (the SemEval 11 labels, or any ``LabelSet``).

Constrained generation always writes the canonical form (``anger, disgust`` or ``none``), but
the parser also reads what unconstrained models write: any order or case, lists in Python or
JSON syntax, other separators, adjective forms, small misspellings and negations. It never raises.

Misspellings: a word of 4+ letters within two edits of a label of 5+ letters is read as that label,
unless it is a real English word (``gladness``, ``tryst``, ``optimise``...): those are listed in
``resources/english_near_labels.txt``, which ``scripts/make_word_list.py`` generates.

Negation: a negator cancels the label words among the ``NEGATION_REACH`` words after it, so
``not angry``, ``not at all angry``, ``no sign of fear``, ``isn't joyful`` and ``no anger at all``
name no label. The reach ends early at a list separator or a sentence end (``, ; . ! ? | /``, a
closing bracket, a line break, a spaced dash) and at a word of ``SCOPE_BREAKERS`` (``but``, ``and``,
``except``...): ``anger, not joy`` gives anger, ``not angry but sad`` and ``not angry and sad`` give
sadness, ``not angry and not sad`` gives nothing. ``or`` and ``nor`` do not end it, so
``not angry or sad`` and ``neither angry nor sad`` give nothing; nor does a colon (``Absent: anger``
gives nothing). ``not only``, ``not just`` and ``no doubt`` negate nothing. A negated mention only fails to
count: it does not cancel another, un-negated mention of the same label (``joy, not joy`` gives joy).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from importlib import resources

import numpy as np

from gen_emotion.core.labels import LABELS, SEMEVAL, LabelSet

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
    "angrier": "anger",
    "angriest": "anger",
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
    "sadder": "sadness",
    "saddest": "sadness",
    "saddened": "sadness",
    "surprised": "surprise",
    "surprising": "surprise",
    "trusting": "trust",
    "trusted": "trust",
    "optimist": "optimism",
    "pessimist": "pessimism",
}
"""Word forms that name a label."""

NEGATORS: frozenset[str] = frozenset(
    {
        "not",
        "no",
        "never",
        "without",
        "nor",
        "neither",
        "nothing",
        "non",
        "cannot",
        "hardly",
        "barely",
        "scarcely",
        "lack",
        "lacks",
        "lacked",
        "lacking",
        "absent",
        "absence",
        "devoid",
        # contractions written without the apostrophe
        "aint",
        "arent",
        "cant",
        "couldnt",
        "didnt",
        "doesnt",
        "dont",
        "hadnt",
        "hasnt",
        "havent",
        "isnt",
        "shouldnt",
        "wasnt",
        "werent",
        "wont",
        "wouldnt",
    }
)
"""Words that negate the label words shortly after them; so does every ``n't`` contraction (``isn't``,
``don't``, ``can't``, with a straight or a curly apostrophe)."""

SCOPE_BREAKERS: frozenset[str] = frozenset(
    {"and", "but", "except", "however", "although", "though", "whereas", "while", "instead", "rather"}
)
"""Words that end a negation's reach, like a list separator: ``and`` joins list items as a comma does."""

NOT_NEGATING_NEXT: frozenset[str] = frozenset({"only", "just", "merely", "simply", "doubt", "question", "wonder"})
"""A negator right before one of these words negates nothing (``not only angry``, ``no doubt joyful``)."""

NEGATION_REACH = 5
"""How many words after a negator it reaches (``not feeling any joy``, ``doesn't show any sign of anger``)."""

MAX_EDITS = 2
"""Largest edit distance at which a word is read as a misspelt label."""
MIN_FUZZY_LENGTH = 4
"""Shorter words are never read as a misspelt label."""
FUZZY_TARGETS: tuple[str, ...] = tuple(label for label in LABELS if len(label) >= 5)
"""The labels that misspellings are matched to (``joy``, ``fear`` and ``love`` are too short)."""

WORD_LIST = "english_near_labels.txt"
"""The list of real words near a label, in ``gen_emotion/resources``."""

_STOP = r"[,;.!?|/\\\n\r)\]}\u2022\u2026\u2013\u2014]|\s-+\s"
"""What ends a list item or a sentence: punctuation, a closing bracket, a line break, a bullet, a spaced dash."""
_WORD = r"[a-z]+n['\u2019]t\b|[a-z]+"
"""A word: an ``n't`` contraction whole, or a run of letters a-z."""
_TOKEN = re.compile(rf"(?P<stop>{_STOP})|(?P<word>{_WORD})")
_INDEX = {label: i for i, label in enumerate(LABELS)}
_DELETE_LABEL_LETTERS = {label: str.maketrans("", "", label) for label in FUZZY_TARGETS}


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


def nearest_label(word: str) -> str | None:
    """The label of ``FUZZY_TARGETS`` within ``MAX_EDITS`` edits of ``word`` (the nearest; the first on a tie).

    This is the spelling-tolerant match alone: it does not consult the list of real words.
    """
    if len(word) < MIN_FUZZY_LENGTH:
        return None
    best, best_distance = None, MAX_EDITS + 1
    for label in FUZZY_TARGETS:
        # Each letter of ``word`` that ``label`` lacks costs an edit: a cheap lower bound.
        if len(word.translate(_DELETE_LABEL_LETTERS[label])) >= best_distance:
            continue
        distance = _edit_distance(word, label, MAX_EDITS)
        if distance < best_distance:
            best, best_distance = label, distance
    return best


def read_word_list(text: str) -> frozenset[str]:
    """The words of a word-list file: one a line, ``#`` starts a comment, blank lines are skipped."""
    words = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return frozenset(word for word in words if word)


@lru_cache(maxsize=1)
def real_words_near_labels() -> frozenset[str]:
    """Real English words that ``nearest_label`` would read as a label, loaded once from the package."""
    path = resources.files("gen_emotion") / "resources" / WORD_LIST
    return read_word_list(path.read_text(encoding="utf-8"))


@lru_cache(maxsize=4096)
def word_to_label(word: str) -> str | None:
    """The label a lower-case word names (exactly, as a word form, or misspelt), or ``None``."""
    if word in _INDEX:
        return word
    if word in ALIASES:
        return ALIASES[word]
    if word in real_words_near_labels():
        return None
    return nearest_label(word)


def strip_end_of_turn(text: str) -> str:
    """Cut ``text`` at the first end-of-turn token."""
    cut = len(text)
    for token in END_OF_TURN_TOKENS:
        at = text.find(token)
        if at != -1:
            cut = min(cut, at)
    return text[:cut]


def _tokens(text: str) -> Iterator[str | None]:
    """The lower-case words of ``text`` in order, with ``None`` for each mark that ends a list item or sentence."""
    for match in _TOKEN.finditer(text.lower()):
        yield match.group("word")


def is_negator(word: str) -> bool:
    """True when the lower-case ``word`` negates what follows it."""
    return word in NEGATORS or word.endswith(("n't", "n\u2019t"))


def asserted_labels(text: str, word_label: Callable[[str], str | None] = word_to_label) -> set[str]:
    """The labels that ``text`` names outside the reach of a negation (see the module docstring); ``word_label``
    says which label a word names (the SemEval default: names, word forms and misspellings)."""
    found: set[str] = set()
    reach = 0  # how many more words the last negator reaches
    for word in _tokens(text):
        if word is None or word in SCOPE_BREAKERS:
            reach = 0
        elif is_negator(word):
            reach = NEGATION_REACH
        elif reach == NEGATION_REACH and word in NOT_NEGATING_NEXT:
            reach = 0
        else:
            label = word_label(word)
            if label is not None and reach == 0:
                found.add(label)
            reach = max(reach - 1, 0)
    return found


def parse(text: str | None, labels: LabelSet = SEMEVAL) -> np.ndarray:
    """Parse one generation into an int vector of one 0/1 per label. Never raises.

    ``none``, ``neutral``, ``no emotion``, empty text and text naming no label give zeros (with a
    ``none_label``: that label alone). For a label set other than the SemEval default, a string of the
    output grammar is read exactly, and free text by the set's names and aliases (no misspellings).
    """
    out = np.zeros(len(labels), dtype=np.int64)
    if not isinstance(text, str):
        return labels.with_none(out)
    text = strip_end_of_turn(text)
    if labels is SEMEVAL:
        found = asserted_labels(text)
    else:
        exact = labels.from_canonical(text.strip()) if text.strip() else None
        if exact is not None:
            return exact
        found = asserted_labels(text, _lookup(labels).get)
    index = {name: i for i, name in enumerate(labels.names)}
    for label in found:
        out[index[label]] = 1
    return labels.with_none(out)


@lru_cache(maxsize=16)
def _lookup(labels: LabelSet) -> dict[str, str]:
    """The lower-case words that name a label of ``labels`` (one-word names and aliases)."""
    return labels.alias_map()


def parse_many(texts: Iterable[str | None], labels: LabelSet = SEMEVAL) -> np.ndarray:
    """Parse each text; returns an int array of shape ``(n, len(labels))``."""
    rows = [parse(text, labels) for text in texts]
    return np.stack(rows) if rows else np.zeros((0, len(labels)), dtype=np.int64)
