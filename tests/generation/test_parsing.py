"""The parser that turns generated text into an 11-way 0/1 vector."""

from __future__ import annotations

import importlib.util
import itertools
import random
import re
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gen_emotion.core.labels import LABELS, TARGET_FORMATS, render, render_target
from gen_emotion.generation.parsing import (
    ALIASES,
    END_OF_TURN_TOKENS,
    FUZZY_TARGETS,
    NEGATORS,
    SCOPE_BREAKERS,
    WORD_LIST,
    parse,
    parse_many,
    real_words_near_labels,
    word_to_label,
)

ROOT = Path(__file__).resolve().parents[2]


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
    # frequent real-world misspellings (suprise/suprised are even in wordfreq's list, kept out of the word list)
    ("suprise", "surprise"),
    ("suprised", "surprise"),
    ("dissgust", "disgust"),
    ("disgusst", "disgust"),
    ("anticpation", "anticipation"),
    ("sadnness", "sadness"),
    ("angerr", "anger"),
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


# Real English words within two edits of a label: each is in the generated word list.
REAL_WORDS_NEAR_LABELS = [
    ("madness", "sadness"),
    ("gladness", "sadness"),
    ("badness", "sadness"),
    ("danger", "anger"),
    ("finger", "anger"),
    ("angst", "anger"),
    ("truth", "trust"),
    ("crust", "trust"),
    ("tryst", "trust"),
    ("trustee", "trust"),
    ("truest", "trust"),
    ("surmise", "surprise"),
    ("sunrise", "surprise"),
    ("optimise", "optimism"),
    ("optimize", "optimism"),
    ("optimised", "optimism"),
    ("digest", "disgust"),
    ("distrust", "disgust"),
    ("participation", "anticipation"),
]


@pytest.mark.parametrize(("word", "near"), REAL_WORDS_NEAR_LABELS)
def test_real_words_near_a_label_are_not_misspellings(word, near):
    assert 1 <= levenshtein(word, near) <= 2
    assert parse(word).tolist() == [0] * 11
    assert parse(f"{word}, joy").tolist() == vec("joy")


# A label's own word forms stay readable although they are within two edits of it.
@pytest.mark.parametrize(
    ("word", "label"),
    [
        ("surprises", "surprise"),
        ("trusts", "trust"),
        ("angers", "anger"),
        ("disgusts", "disgust"),
        ("optimists", "optimism"),
        ("saddest", "sadness"),
        ("sadder", "sadness"),
        ("angrier", "anger"),
    ],
)
def test_word_forms_of_a_label_still_name_it(word, label):
    assert word not in real_words_near_labels()
    assert parse(word).tolist() == vec(label)


def _load_script():
    """Import scripts/make_word_list.py (not a package module) by path."""
    spec = importlib.util.spec_from_file_location("make_word_list", ROOT / "scripts" / "make_word_list.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _shipped_word_list() -> str:
    return (resources.files("gen_emotion") / "resources" / WORD_LIST).read_text(encoding="utf-8")


def test_word_list_ships_inside_the_package():
    assert (ROOT / "gen_emotion" / "resources" / WORD_LIST).is_file()
    assert len(real_words_near_labels()) > 100


def test_word_list_format():
    lines = _shipped_word_list().splitlines()
    header = [line for line in lines if line.startswith("#")]
    words = [line for line in lines if not line.startswith("#")]
    assert lines[: len(header)] == header, "the comments come first"
    assert words == sorted(set(words))
    assert all(re.fullmatch(r"[a-z]{4,}", word) for word in words)
    assert frozenset(words) == real_words_near_labels()
    header_text = " ".join(header)
    assert f": {len(words)} words." in header_text
    assert "wordfreq" in header_text
    assert "scripts/make_word_list.py" in header_text


def test_word_list_holds_only_words_the_fuzzy_match_would_take():
    forms = set(LABELS) | set(ALIASES)
    for word in real_words_near_labels():
        assert word not in forms, word
        assert min(levenshtein(word, label) for label in FUZZY_TARGETS) <= 2, word


def test_generator_keeps_real_words_and_drops_word_forms_and_misspellings():
    script = _load_script()
    words = ["gladness", "surprises", "optimists", "suprise", "anger", "angry", "hello", "trsut", "zzzzzz"]
    assert script.near_label_words(words) == ["gladness", "trsut"]
    assert script.is_inflection("trusts", script.label_forms())
    assert not script.is_inflection("trustee", script.label_forms())
    text = script.render(["gladness", "tryst"], source_size=1234)
    assert text.endswith("\ngladness\ntryst\n")
    assert ": 2 words." in text and "the 1234 words" in text


def test_shipped_word_list_is_up_to_date():
    pytest.importorskip("wordfreq")
    script = _load_script()
    assert script.build_text() == _shipped_word_list(), "rerun scripts/make_word_list.py"


def test_word_list_source_covers_the_known_false_friends():
    wordfreq = pytest.importorskip("wordfreq")
    script = _load_script()
    for word in ("gladness", "badness", "tryst", "surmise", "optimise"):
        assert wordfreq.zipf_frequency(word, "en", wordlist=script.WORDLIST) >= script.MIN_ZIPF, word


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


@pytest.mark.parametrize("target_format", TARGET_FORMATS)
def test_round_trip_every_vector(target_format):
    for bits in itertools.product((0, 1), repeat=11):
        text = render(np.array(bits), target_format)
        assert parse(text).tolist() == list(bits), text


def test_render_target_is_the_labels_format():
    assert render_target(np.array(vec("anger", "joy"))) == render(np.array(vec("anger", "joy")), "labels")


# ----------------------------------------------------------------------------------- negation

NEGATION_CASES = [
    # a negator cancels the label words shortly after it
    ("not angry", ()),
    ("no anger", ()),
    ("no anger at all", ()),
    ("not at all angry", ()),
    ("no sign of fear", ()),
    ("not feeling any joy", ()),
    ("doesn't show any sign of anger", ()),
    ("I do not think this tweet is angry", ()),
    ("never sad", ()),
    ("without fear", ()),
    ("hardly optimistic", ()),
    ("lack of trust", ()),
    ("non-angry", ()),
    ("Not Angry.", ()),
    ("NO ANGER", ()),
    # n't contractions, straight or curly apostrophe, and without one
    ("isn't joyful", ()),
    ("isn\u2019t joyful", ()),
    ("wasn't scared", ()),
    ("don't feel any fear", ()),
    ("doesn't express sadness", ()),
    ("didn't trust", ()),
    ("can't see any disgust", ()),
    ("dont feel any fear", ()),
    # beyond the reach (5 words) the label counts again
    ("not one two three four five angry", ("anger",)),
    ("not one two three four angry", ()),
    # a list separator or sentence end stops the negation
    ("anger, not joy", ("anger",)),
    ("not joy, anger", ("anger",)),
    ("not joy; anger", ("anger",)),
    ("not joy. Anger", ("anger",)),
    ("not joy! anger", ("anger",)),
    ("not joy\nanger", ("anger",)),
    ("not joy | anger", ("anger",)),
    ("not joy/anger", ("anger",)),
    ("not joy - anger", ("anger",)),
    ("(not joy) anger", ("anger",)),
    ("joy (not anger)", ("joy",)),
    ("['anger', 'not joy']", ("anger",)),
    # but, and, except ... stop it too
    ("not angry but sad", ("sadness",)),
    ("not angry and sad", ("sadness",)),
    ("not angry and not sad", ()),
    ("no emotion except joy", ("joy",)),
    ("not anger, rather sadness", ("sadness",)),
    ("without fear and sad", ("sadness",)),
    # or / nor keep it going
    ("not angry or sad", ()),
    ("neither angry nor sad", ()),
    ("no anger or fear or disgust", ()),
    # a negated mention does not cancel another, plain mention of the same label
    ("joy, not joy", ("joy",)),
    ("not joy, joy", ("joy",)),
    # not only / no doubt do not negate
    ("not only angry but sad", ("anger", "sadness")),
    ("no doubt joyful", ("joy",)),
    ("not just fear", ("fear",)),
    # sentences
    ("The tweet does not express anger; it expresses joy.", ("joy",)),
    ("There is no sign of fear, but a lot of anger.", ("anger",)),
    ("Emotions: joy, optimism. Not present: anger", ("joy", "optimism")),
    ("Absent: anger, fear", ("fear",)),
    ("No emotions.", ()),
    ("none", ()),
]


@pytest.mark.parametrize(("text", "names"), NEGATION_CASES)
def test_negation(text, names):
    assert parse(text).tolist() == vec(*names)


@pytest.mark.parametrize("negator", sorted(NEGATORS))
def test_every_negator_negates_and_a_comma_ends_it(negator):
    assert word_to_label(negator) is None
    assert parse(f"{negator} anger").tolist() == [0] * 11
    assert parse(f"{negator}, anger").tolist() == vec("anger")


@pytest.mark.parametrize("word", sorted(SCOPE_BREAKERS))
def test_every_scope_breaker_ends_a_negation(word):
    assert parse(f"not fear {word} anger").tolist() == vec("anger")


# --------------------------------------------------------------------- property-based tests

# Pieces that exercise every branch of the parser when glued together at random.
FRAGMENTS = (
    [*LABELS, *ALIASES, *sorted(NEGATORS), *sorted(SCOPE_BREAKERS), *END_OF_TURN_TOKENS]
    + ["n't", "isn't", "n\u2019t", "'", '"', "[", "]", "(", ")", "{", "}", " ", "  ", "\n", "\r\n", "\t", "\x00"]
    + [",", ", ", ";", ":", ".", "!", "?", "|", "/", "\\", " - ", "-", "\u2014", "\u2026", "\u2022", "none"]
    + ["gladness", "suprise", "trsut", "angre", "\u0130", "\u017f", "\ufb00", "\ud800", "\U0001f600", "\u202e"]
)
FAST = settings(max_examples=150, deadline=None, database=None)


def check_vector(out: np.ndarray) -> None:
    assert isinstance(out, np.ndarray)
    assert out.shape == (11,)
    assert out.dtype == np.int64
    assert set(out.tolist()) <= {0, 1}


@FAST
@given(st.text(st.characters(), max_size=200))
def test_parse_never_raises_on_any_text(text):
    check_vector(parse(text))


@FAST
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join))
def test_parse_never_raises_on_glued_fragments(text):
    check_vector(parse(text))
    check_vector(parse(text.upper()))


@settings(max_examples=20, deadline=None, database=None)
@given(st.text(st.characters(), min_size=1, max_size=20), st.integers(1_000, 20_000))
def test_parse_never_raises_on_very_long_text(piece, repeats):
    check_vector(parse(piece * repeats))


vectors = st.lists(st.integers(0, 1), min_size=11, max_size=11)
case_changes = st.sampled_from([str, str.lower, str.upper, str.title, str.swapcase, str.capitalize])


@FAST
@given(
    vectors,
    st.sampled_from(TARGET_FORMATS),
    case_changes,
    st.text(" \t\r\n", max_size=4),
    st.text(" \t\r\n", max_size=4),
    st.none() | st.sampled_from(END_OF_TURN_TOKENS),
    st.text(st.characters(), max_size=30),
)
def test_canonical_rendering_parses_back(bits, target_format, change_case, before, after, end_marker, tail):
    text = before + change_case(render(np.array(bits), target_format)) + after
    if end_marker is not None:
        text += end_marker + tail  # everything after the marker is ignored, whatever it says
    assert parse(text).tolist() == bits


_FORMS = {label: [label, *(alias for alias, name in ALIASES.items() if name == label)] for label in LABELS}
NEGATED_TEMPLATES = ["not {}", "no {}", "no sign of {}", "not at all {}", "without {}", "isn't {}", "never {}"]


@st.composite
def mixed_mentions(draw):
    """A text naming some labels plainly and negating others, with the vector it means."""
    plain = draw(vectors)
    negated = draw(vectors)
    items = [draw(st.sampled_from(_FORMS[label])) for label, on in zip(LABELS, plain) if on]
    for label, on in zip(LABELS, negated):
        if on:
            template = draw(st.sampled_from(NEGATED_TEMPLATES))
            items.append(template.format(draw(st.sampled_from(_FORMS[label]))))
    separator = draw(st.sampled_from([", ", "; ", "\n", " and ", " but ", ". ", " | "]))
    return separator.join(draw(st.permutations(items))), plain


@FAST
@given(mixed_mentions())
def test_negated_mentions_never_count_and_plain_ones_always_do(case):
    text, plain = case
    assert parse(text).tolist() == plain, text


@FAST
@given(st.text("adeginoprstu", min_size=4, max_size=13))
def test_fuzzy_match_is_the_nearest_label_within_two_edits(word):
    if word in LABELS or word in ALIASES or word in real_words_near_labels():
        return
    distances = {label: levenshtein(word, label) for label in FUZZY_TARGETS}
    nearest = min(distances.values())
    label = word_to_label(word)
    if nearest > 2:
        assert label is None
    else:
        assert label is not None and distances[label] == nearest
