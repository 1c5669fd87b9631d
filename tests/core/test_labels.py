"""Labels: canonical order, target rendering and the output grammar."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gen_emotion.core.labels import (
    LABELS,
    NUM_LABELS,
    OUTPUT_REGEX,
    TARGET_FORMATS,
    check_vector,
    is_canonical,
    output_regex,
    render,
    render_target,
    render_target_list,
    vector_from_names,
)

CANONICAL = (
    "anger",
    "anticipation",
    "disgust",
    "fear",
    "joy",
    "love",
    "optimism",
    "pessimism",
    "sadness",
    "surprise",
    "trust",
)

ALL_VECTORS = [np.array(bits, dtype=np.int64) for bits in itertools.product((0, 1), repeat=len(CANONICAL))]


def names_of(vector) -> list[str]:
    return [label for label, on in zip(CANONICAL, vector) if on]


def test_canonical_order():
    assert LABELS == CANONICAL
    assert NUM_LABELS == 11
    assert len(set(LABELS)) == 11


def test_all_vectors_fixture_is_complete():
    assert len(ALL_VECTORS) == 2**11
    assert len({tuple(v) for v in ALL_VECTORS}) == 2**11


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ((), "none"),
        (("anger",), "anger"),
        (("anger", "disgust"), "anger, disgust"),
        (("trust", "anger"), "anger, trust"),
        (CANONICAL, ", ".join(CANONICAL)),
    ],
)
def test_render_target(names, expected):
    vector = [int(label in names) for label in CANONICAL]
    assert render_target(vector) == expected
    assert render(vector) == expected
    assert render(np.array(vector), "labels") == expected


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ((), "[]"),
        (("joy",), "['joy']"),
        (("anger", "disgust"), "['anger', 'disgust']"),
        (("surprise", "fear", "trust"), "['fear', 'surprise', 'trust']"),
    ],
)
def test_render_python_list(names, expected):
    vector = [int(label in names) for label in CANONICAL]
    assert render_target_list(vector) == expected
    assert render(vector, "python_list") == expected


def test_render_rejects_unknown_format():
    with pytest.raises(ValueError, match="target_format"):
        render([0] * 11, "json")
    with pytest.raises(ValueError, match="target_format"):
        output_regex(target_format="json")


@pytest.mark.parametrize(
    ("vector", "message"),
    [
        ([0] * 10, "11"),
        ([0] * 12, "11"),
        ([], "11"),
        ([[0] * 11], "11"),
        ([0] * 10 + [2], "0 or 1"),
        ([0] * 10 + [-1], "0 or 1"),
        ([0.5] + [0] * 10, "0 or 1"),
    ],
)
def test_check_vector_errors(vector, message):
    with pytest.raises(ValueError, match=message):
        check_vector(vector)
    with pytest.raises(ValueError):
        render_target(vector)


def test_check_vector_returns_int_array():
    out = check_vector([True, False] + [0] * 9)
    assert out.dtype == np.int64
    assert out.tolist() == [1, 0] + [0] * 9


def test_vector_from_names():
    assert vector_from_names(["trust", "anger"]).tolist() == [1] + [0] * 9 + [1]
    assert vector_from_names([]).tolist() == [0] * 11
    with pytest.raises(ValueError, match="unknown label 'happy'"):
        vector_from_names(["happy"])


def test_labels_regex_admits_every_canonical_rendering():
    pattern = re.compile(OUTPUT_REGEX)
    for vector in ALL_VECTORS:
        text = render_target(vector)
        assert pattern.fullmatch(text), text
        assert is_canonical(text)


def test_python_list_regex_admits_every_canonical_rendering():
    pattern = re.compile(output_regex(target_format="python_list"))
    for vector in ALL_VECTORS:
        text = render_target_list(vector)
        assert pattern.fullmatch(text), text
        assert is_canonical(text, "python_list")


def _bad_label_strings() -> list[str]:
    """Non-canonical strings built from every multi-label subset, plus hand-picked ones."""
    bad = []
    for vector in ALL_VECTORS:
        names = names_of(vector)
        if len(names) >= 2:
            bad.append(", ".join(reversed(names)))  # wrong order
            bad.append(",".join(names))  # no space
            bad.append(" ,".join(names))  # space before the comma
        if names:
            bad.append(", ".join(names) + ",")  # trailing comma
            bad.append(", ".join(names) + ", ")  # trailing separator
            bad.append(", ".join([names[0], *names]))  # first label repeated
            bad.append(", ".join(names).upper())
            bad.append("none, " + ", ".join(names))
            bad.append(", ".join(names) + ", none")
    bad += [
        "",
        " ",
        "anger,joy",
        "anger ,joy",
        "anger, joy,",
        "anger,  joy",
        "anger; joy",
        "anger and joy",
        "joy, anger",
        "anger, anger",
        "Anger",
        "ANGER, JOY",
        "None",
        "NONE",
        "none, anger",
        "none ",
        " none",
        "anger ",
        " anger",
        "anger\n",
        "['anger']",
        "[]",
        "angry",
        "happiness",
    ]
    return bad


def test_labels_regex_rejects_non_canonical_strings():
    pattern = re.compile(OUTPUT_REGEX)
    bad = _bad_label_strings()
    assert len(bad) > 10_000
    canonical = {render_target(v) for v in ALL_VECTORS}
    for text in bad:
        assert text not in canonical  # the generator itself must produce only bad strings
        assert pattern.fullmatch(text) is None, repr(text)
        assert not is_canonical(text)


def test_python_list_regex_rejects_non_canonical_strings():
    pattern = re.compile(output_regex(target_format="python_list"))
    bad = []
    for vector in ALL_VECTORS:
        quoted = [f"'{name}'" for name in names_of(vector)]
        if len(quoted) >= 2:
            bad.append("[" + ", ".join(reversed(quoted)) + "]")
            bad.append("[" + ",".join(quoted) + "]")
        if quoted:
            bad.append("[" + ", ".join([quoted[0], *quoted]) + "]")
            bad.append("[" + ", ".join(quoted) + ", ]")
            bad.append("[" + ", ".join(quoted).upper() + "]")
            bad.append("[" + ", ".join(q.replace("'", '"') for q in quoted) + "]")  # JSON quotes
            bad.append(", ".join(quoted))  # no brackets
            bad.append("[" + ", ".join(q.strip("'") for q in quoted) + "]")  # unquoted
    bad += ["", "none", "[none]", "['none']", "[ ]", "['anger',]", "['anger' ]", "[]\n", "['none', 'anger']"]
    canonical = {render_target_list(v) for v in ALL_VECTORS}
    for text in bad:
        assert text not in canonical
        assert pattern.fullmatch(text) is None, repr(text)
        assert not is_canonical(text, "python_list")


def test_regex_stays_small():
    assert len(OUTPUT_REGEX) < 2_000
    assert len(output_regex(target_format="python_list")) < 2_000
    assert output_regex() == OUTPUT_REGEX


def test_regex_with_a_label_subset():
    pattern = re.compile(output_regex(("anger", "joy")))
    assert pattern.fullmatch("anger, joy")
    assert pattern.fullmatch("joy")
    assert pattern.fullmatch("none")
    assert not pattern.fullmatch("fear")
    assert not pattern.fullmatch("joy, anger")


# --- property: the grammar admits exactly the rendered targets ------------------------------------------------


@pytest.mark.parametrize("target_format", TARGET_FORMATS)
@settings(max_examples=300, deadline=None, database=None)
@given(data=st.data())
def test_every_string_of_the_grammar_is_one_rendered_target(target_format, data):
    from gen_emotion.generation.parsing import parse

    text = data.draw(st.from_regex(output_regex(target_format=target_format), fullmatch=True))
    assert render(parse(text), target_format) == text


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(st.sampled_from(LABELS), unique=True), st.sampled_from(TARGET_FORMATS))
def test_every_rendered_target_is_in_the_grammar(labels, target_format):
    import re

    vector = [int(label in labels) for label in LABELS]
    assert re.fullmatch(output_regex(target_format=target_format), render(vector, target_format))
