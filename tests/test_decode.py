"""The parser that turns generated text into an 11-way 0/1 vector."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from gen_emotion.decode import parse, parse_many
from gen_emotion.labels import LABELS, render_target


def vec(*names: str) -> list[int]:
    for name in names:
        assert name in LABELS, name
    return [int(label in names) for label in LABELS]


def levenshtein(a: str, b: str) -> int:
    """Plain Levenshtein distance (insert, delete, substitute), independent of the package's."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def test_reference_levenshtein():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert levenshtein("trust", "trsut") == 2
    assert levenshtein("anger", "anger") == 0


CASES = [
    # canonical output
    ("anger, disgust", ("anger", "disgust")),
    ("none", ()),
    ("joy", ("joy",)),
    (", ".join(LABELS), LABELS),
    # any order and case
    ("disgust, anger", ("anger", "disgust")),
    ("Trust, JOY, Anger", ("anger", "joy", "trust")),
    ("SADNESS", ("sadness",)),
    ("  love  ", ("love",)),
    # separators
    ("anger,joy", ("anger", "joy")),
    ("anger;joy", ("anger", "joy")),
    ("anger | joy", ("anger", "joy")),
    ("anger/joy", ("anger", "joy")),
    ("anger\njoy\nfear", ("anger", "fear", "joy")),
    ("anger\r\njoy", ("anger", "joy")),
    ("anger and joy", ("anger", "joy")),
    ("fear, sadness and pessimism", ("fear", "pessimism", "sadness")),
    ("- anger\n- joy", ("anger", "joy")),
    ("1. optimism 2. trust", ("optimism", "trust")),
    # Python / JSON list syntax
    ("['anger', 'disgust']", ("anger", "disgust")),
    ('["anger", "disgust"]', ("anger", "disgust")),
    ('{"labels": ["joy", "love"]}', ("joy", "love")),
    ("[]", ()),
    ("['surprise']", ("surprise",)),
    ("(fear)", ("fear",)),
    # no emotion
    ("none", ()),
    ("None", ()),
    ("NONE.", ()),
    ("neutral", ()),
    ("no emotion", ()),
    ("No emotions.", ()),
    ("", ()),
    ("   \n\t", ()),
    # repeats counted once
    ("anger, anger, anger", ("anger",)),
    ("joy joy, Joy; JOY", ("joy",)),
    ("angry, anger", ("anger",)),
    # adjective forms
    ("angry", ("anger",)),
    ("disgusted", ("disgust",)),
    ("afraid", ("fear",)),
    ("scared", ("fear",)),
    ("fearful", ("fear",)),
    ("joyful", ("joy",)),
    ("happy", ("joy",)),
    ("loving", ("love",)),
    ("optimistic", ("optimism",)),
    ("pessimistic", ("pessimism",)),
    ("sad", ("sadness",)),
    ("surprised", ("surprise",)),
    ("trusting", ("trust",)),
    ("anticipating", ("anticipation",)),
    ("Angry and SAD", ("anger", "sadness")),
    # end-of-turn markers cut the text
    ("joy<|im_end|>anger", ("joy",)),
    ("joy<|im_end|>\nanger<|im_end|>fear", ("joy",)),
    ("sadness<|eot_id|>trust", ("sadness",)),
    ("<|im_end|>anger", ()),
    ("fear<|eot_id|>joy<|im_end|>love", ("fear",)),
    # other words are ignored
    ("The tweet expresses joy.", ("joy",)),
    ("Labels: fear, sadness", ("fear", "sadness")),
    ("hello world", ()),
    ("xyz qqq 123 !!!", ()),
    ("emotion", ()),
    ("label", ()),
    ("sentiment: positive", ()),
]


@pytest.mark.parametrize(("text", "names"), CASES)
def test_parse(text, names):
    out = parse(text)
    assert isinstance(out, np.ndarray)
    assert out.shape == (11,)
    assert out.dtype == np.int64
    assert out.tolist() == vec(*names)


@pytest.mark.parametrize("value", [None, 0, 1.5, b"anger", ["anger"]])
def test_parse_non_strings_give_zeros(value):
    assert parse(value).tolist() == [0] * 11


# (misspelling, label): each is verified to be within Levenshtein distance 2 below.
MISSPELLINGS = [
    ("angre", "anger"),
    ("suprise", "surprise"),
    ("surprize", "surprise"),
    ("optimsm", "optimism"),
    ("optimisim", "optimism"),
    ("pesimism", "pessimism"),
    ("pessimsm", "pessimism"),
    ("sadnes", "sadness"),
    ("sadnss", "sadness"),
    ("anticipaton", "anticipation"),
    ("antcipation", "anticipation"),
    ("disgst", "disgust"),
    ("discust", "disgust"),
    ("trsut", "trust"),
    ("trustt", "trust"),
]


@pytest.mark.parametrize(("word", "label"), MISSPELLINGS)
def test_misspellings_within_two_edits(word, label):
    assert len(label) >= 5
    assert 1 <= levenshtein(word, label) <= 2
    assert parse(word).tolist() == vec(label)
    assert parse(f"{word}, joy").tolist() == vec(label, "joy")


# Each word is exactly 3 edits from its nearest label and 3 or more from every other (checked below).
FAR_WORDS = [
    ("axgxx", "anger"),
    ("angerxxx", "anger"),
    ("sxdxexs", "sadness"),
    ("sadnxxx", "sadness"),
    ("sxrxrxse", "surprise"),
    ("surpr", "surprise"),
    ("oxtxmxsm", "optimism"),
    ("pxsxixism", "pessimism"),
    ("txuxx", "trust"),
    ("dxsxuxt", "disgust"),
    ("axtxcxpation", "anticipation"),
]


@pytest.mark.parametrize(("word", "nearest"), FAR_WORDS)
def test_three_edits_is_not_a_label(word, nearest):
    assert min(levenshtein(word, label) for label in LABELS) >= 3
    assert levenshtein(word, nearest) == 3
    assert parse(word).tolist() == [0] * 11


@pytest.mark.parametrize("word", ["jay", "joi", "jo", "jyo", "fer", "feat", "fera", "lov", "lvoe", "loev", "dove"])
def test_short_labels_are_not_fuzzily_matched(word):
    assert word not in LABELS
    assert parse(word).tolist() == [0] * 11


# Plain English words that models write around their answer. Several are within two edits of a
# label (answer/after/under -> anger, just/must -> trust, distrust -> disgust), but none of them
# names an emotion, so none may switch a label on.
@pytest.mark.parametrize(
    "text",
    [
        "Answer: joy",
        "after reading the tweet: joy",
        "joy, under the circumstances",
        "just joy",
        "it must be joy",
        "joy (test)",
        "enter joy",
        "joy; distrust",
    ],
)
def test_common_words_do_not_switch_on_labels(text):
    assert parse(text).tolist() == vec("joy")


@pytest.mark.parametrize("word", ["madness", "danger", "finger", "truth", "crust"])
def test_listed_real_words_are_not_misspellings(word):
    assert parse(word).tolist() == [0] * 11


def _random_strings(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = [chr(c) for c in range(32, 127)] + list("\t\n\r\x00\x0b\x0c")
    alphabet += list("éßøİıſﬀ‘’“”—…€😀🙃ЖжΩ中文ｊｏｙ\u200b\u202e\ufeff\ud7ff")
    alphabet += ["<|im_end|>", "<|eot_id|>", "anger", "joy", ", ", "none", "[", "'", '"']
    out = []
    for _ in range(count):
        n = rng.randint(0, 60)
        out.append("".join(rng.choice(alphabet) for _ in range(n)))
    # a few with arbitrary code points, lone surrogates included
    for _ in range(100):
        out.append("".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(rng.randint(1, 30))))
    return out


def test_parse_never_raises_on_junk():
    texts = _random_strings(2000, seed=1234)
    for text in texts:
        out = parse(text)
        assert out.shape == (11,)
        assert set(out.tolist()) <= {0, 1}
    many = parse_many(texts)
    assert many.shape == (len(texts), 11)


def test_parse_very_long_text():
    text = "blah " * 50_000 + "trust"
    assert parse(text).tolist() == vec("trust")


@pytest.mark.parametrize("n", [0, 1, 3, 17])
def test_parse_many_shape(n):
    texts = ["anger, joy", None, "none"] * 6
    out = parse_many(texts[:n])
    assert out.shape == (n, 11)
    assert out.dtype == np.int64
    for i in range(n):
        assert out[i].tolist() == parse(texts[i]).tolist()


def test_parse_many_accepts_a_generator():
    out = parse_many(text for text in ["fear", "love"])
    assert out.tolist() == [vec("fear"), vec("love")]


def test_round_trip_every_vector():
    for bits in itertools.product((0, 1), repeat=11):
        vector = np.array(bits)
        assert parse(render_target(vector)).tolist() == list(bits), render_target(vector)
