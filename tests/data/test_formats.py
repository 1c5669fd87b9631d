"""Reading and validating tweet files (``data/formats.py``: every format into a table; ``data/records.py``: its
rows and labels)."""

from __future__ import annotations

import csv
import io
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import LABEL_HEADER, TRAIN_HEADER, onehot, write_rows
from hypothesis import event, given, settings
from hypothesis import strategies as st

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.labels import LABELS
from gen_emotion.data import formats as formats_module
from gen_emotion.data.dataset import DataError, EmotionData, label_counts
from gen_emotion.data.formats import read_emotion_file, read_label_file, read_test, read_train

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
NONE_ROW = ["NONE"] * 11
FIELD_LIMIT = csv.field_size_limit()  # the csv module's default: 131,072 characters
READERS = [read_train, read_test, read_label_file, read_emotion_file]
# Property tests: few examples and no example database (nothing written into the repository).
PROPERTY = settings(max_examples=60, deadline=None, database=None)


def assert_names(err: pytest.ExceptionInfo, path: Path, row: int | None = None) -> str:
    """The error message is one line naming ``path`` (and ``row N`` when given)."""
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message
    if row is not None:
        assert re.search(rf"\brow {row}\b", message), message
    return message


# --- valid files -------------------------------------------------------------------------------


def test_read_valid_train(train_csv):
    path = train_csv(
        [
            ["2017-00001", "So happy today!", *onehot("joy", "optimism")],
            ["00123", "Why is the bus late again", *onehot("anger")],
            ["7", "nothing much", *onehot()],
        ]
    )
    data = read_train(path)
    assert isinstance(data, EmotionData)
    assert len(data) == 3
    assert data.ids == ["2017-00001", "00123", "7"]
    assert all(isinstance(i, str) for i in data.ids)
    assert data.texts == ["So happy today!", "Why is the bus late again", "nothing much"]
    assert data.labels is not None
    assert data.labels.shape == (3, 11)
    assert data.labels.dtype == np.int64
    assert data.labels.tolist() == [onehot("joy", "optimism"), onehot("anger"), onehot()]
    assert data.source == str(path)


def test_read_train_with_quoted_commas_and_newlines(train_csv):
    tweet = 'He said "hi, there"\nand left, #sad'
    data = read_train(train_csv([["a", tweet, *onehot("sadness")], ["b", "ok", *onehot()]]))
    assert data.texts[0] == tweet
    assert data.ids == ["a", "b"]


def test_read_train_with_bom_and_crlf(tmp_path):
    body = ",".join(TRAIN_HEADER) + "\r\n" + ",".join(["x1", "hello", *map(str, onehot("fear"))]) + "\r\n"
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    data = read_train(path)
    assert data.ids == ["x1"]
    assert data.texts == ["hello"]
    assert data.labels.tolist() == [onehot("fear")]


def test_label_columns_in_another_order(tmp_path):
    header = ["Tweet", "ID", *reversed(LABELS)]
    path = write_rows(tmp_path / "t.csv", header, [["hi", "1", *reversed(onehot("anger", "love"))]])
    data = read_train(path)
    assert data.ids == ["1"]
    assert data.labels.tolist() == [onehot("anger", "love")]


def test_read_test_with_none_labels(train_csv):
    path = train_csv([["t1", "first", *NONE_ROW], ["t2", "second", *NONE_ROW]], name="test.csv")
    data = read_test(path)
    assert data.ids == ["t1", "t2"]
    assert data.texts == ["first", "second"]
    assert data.labels is None
    # the generic reader too
    assert read_emotion_file(path).labels is None


def test_read_test_without_label_columns(train_csv):
    data = read_test(train_csv([["t1", "first"]], header=["ID", "Tweet"]))
    assert data.ids == ["t1"]
    assert data.labels is None


def test_read_semeval_tab_separated(tmp_path):
    header = ["ID", "Tweet", *LABELS]
    rows = [
        ["2018-En-01559", "@user Wow, that was close... #relief", *onehot("surprise", "fear")],
        ["2018-En-03739", "Can't wait for the weekend!", *onehot("anticipation", "joy")],
    ]
    path = write_rows(tmp_path / "2018-E-c-En-dev.txt", header, rows, delimiter="\t")
    data = read_train(path)
    assert data.ids == ["2018-En-01559", "2018-En-03739"]
    assert data.texts == [rows[0][1], rows[1][1]]
    assert data.labels.tolist() == [onehot("fear", "surprise"), onehot("anticipation", "joy")]


def test_semeval_tweets_with_double_quotes_are_read_verbatim(tmp_path):
    # SemEval files are raw tab-separated text, not CSV: a double quote is part of the tweet.
    zeros = "\t".join(["0"] * 11)
    tweets = ['"Best day ever" she said', 'He said "hi"', '"unbalanced start', "plain"]
    body = "\t".join(["ID", "Tweet", *LABELS]) + "\n"
    body += "".join(f"2018-En-{i:05d}\t{tweet}\t{zeros}\n" for i, tweet in enumerate(tweets))
    path = tmp_path / "semeval.txt"
    path.write_text(body, encoding="utf-8")
    data = read_train(path)
    assert data.texts == tweets
    assert len(data) == 4


def test_empty_and_very_long_tweets_are_kept(train_csv):
    long_tweet = ("word " * 1000).strip() + "!"  # 5,000 characters
    assert len(long_tweet) == 5000
    rows = [
        ["r1", "first", *onehot("joy")],
        ["r2", "", *onehot()],
        ["r3", long_tweet, *onehot("trust")],
        ["r4", "last", *onehot("anger")],
    ]
    data = read_train(train_csv(rows))
    assert len(data) == 4
    assert data.ids == ["r1", "r2", "r3", "r4"]
    assert data.texts == ["first", "", long_tweet, "last"]
    assert data.labels.tolist() == [onehot("joy"), onehot(), onehot("trust"), onehot("anger")]


def test_read_label_file_without_tweet(tmp_path):
    path = write_rows(tmp_path / "pred.csv", LABEL_HEADER, [["a", *onehot("joy")], ["b", *onehot()]])
    data = read_label_file(path)
    assert data.ids == ["a", "b"]
    assert data.texts == ["", ""]
    assert data.labels.tolist() == [onehot("joy"), onehot()]


def test_sample_files(sample_dir):
    train = read_train(sample_dir / "train.csv")
    assert len(train) == 300
    assert train.labels.shape == (300, 11)
    test = read_test(sample_dir / "test.csv")
    assert len(test) == 80
    assert test.labels is None
    gold = read_label_file(sample_dir / "test_labels.csv")
    assert gold.ids == test.ids
    assert gold.labels.shape == (80, 11)


def test_label_counts():
    labels = np.array([onehot("anger", "joy"), onehot("joy"), onehot()])
    counts = label_counts(labels)
    assert list(counts) == list(LABELS)
    assert counts["joy"] == 2
    assert counts["anger"] == 1
    assert sum(counts.values()) == 3


# --- bad files ----------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError) as err:
        read_train(path)
    assert_names(err, path)


def test_missing_id_column(train_csv):
    header = ["Id_", "Tweet", *LABELS]
    path = train_csv([["1", "x", *onehot()]], header=header)
    with pytest.raises(DataError) as err:
        read_train(path)
    assert "'ID'" in assert_names(err, path, row=1)


def test_missing_tweet_column(train_csv):
    header = ["ID", "Text", *LABELS]
    path = train_csv([["1", "x", *onehot()]], header=header)
    with pytest.raises(DataError) as err:
        read_train(path)
    assert "'Tweet'" in assert_names(err, path, row=1)


@pytest.mark.parametrize("reader", [read_train, read_test])
def test_missing_one_label_column(train_csv, reader):
    header = ["ID", "Tweet", *LABELS[:-1]]
    path = train_csv([["1", "x", *onehot()[:-1]]], header=header)
    with pytest.raises(DataError) as err:
        reader(path)
    assert "trust" in assert_names(err, path, row=1)


@pytest.mark.parametrize("value", ["2", "x", "", "NONE", "1.0", "-1"])
def test_bad_label_value_in_train(train_csv, value):
    values = onehot("anger")
    values[LABELS.index("love")] = value
    path = train_csv([["ok", "fine", *onehot()], ["bad", "tweet", *values]])
    with pytest.raises(DataError) as err:
        read_train(path)
    message = assert_names(err, path, row=3)
    assert "love" in message
    assert repr(value) in message


def test_duplicate_id_names_both_rows(train_csv):
    path = train_csv(
        [
            ["a", "one", *onehot()],
            ["b", "two", *onehot()],
            ["a", "three", *onehot()],
        ]
    )
    with pytest.raises(DataError) as err:
        read_train(path)
    message = assert_names(err, path, row=4)
    assert "'a'" in message
    assert re.search(r"\brow 2\b", message), message


def test_ids_are_not_normalised(train_csv):
    # "007" and "7" are different IDs: no numeric conversion, no duplicate error
    data = read_train(train_csv([["007", "a", *onehot()], ["7", "b", *onehot()]]))
    assert data.ids == ["007", "7"]


def test_empty_id(train_csv):
    path = train_csv([["a", "x", *onehot()], ["  ", "y", *onehot()]])
    with pytest.raises(DataError) as err:
        read_train(path)
    assert_names(err, path, row=3)


@pytest.mark.parametrize("content", [b"", b"\n\n", b"   \n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    with pytest.raises(DataError) as err:
        read_train(path)
    assert "empty" in assert_names(err, path)


def test_header_only_file(train_csv):
    path = train_csv([])
    with pytest.raises(DataError) as err:
        read_train(path)
    assert "no rows" in assert_names(err, path)


def test_non_utf8_bytes(tmp_path):
    lines = [
        ",".join(TRAIN_HEADER).encode(),
        b"a,fine," + ",".join(["0"] * 11).encode(),
        b"b,caf\xff bad," + ",".join(["0"] * 11).encode(),
    ]
    path = tmp_path / "latin.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(DataError) as err:
        read_train(path)
    message = assert_names(err, path, row=3)
    assert re.search(r"\bline 3\b", message), message
    assert "UTF-8" in message


@pytest.mark.parametrize("extra", [[], ["0"], ["0", "0"]])
def test_wrong_field_count(train_csv, extra):
    good = ["a", "x", *onehot()]
    bad = ["b", "y", *onehot()]
    bad = bad[:-1] if not extra else bad + extra
    path = train_csv([good, bad, good[:1] + ["c"] + good[2:]])
    with pytest.raises(DataError) as err:
        read_train(path)
    message = assert_names(err, path, row=3)
    assert "13" in message


def test_mixed_labelled_and_none_rows(train_csv):
    path = train_csv([["a", "x", *onehot("joy")], ["b", "y", *NONE_ROW]])
    with pytest.raises(DataError) as err:
        read_emotion_file(path)
    assert_names(err, path)
    with pytest.raises(DataError):
        read_train(path)


def test_data_error_is_a_gen_emotion_error():
    assert issubclass(DataError, GenEmotionError)


# --- long tweets and the csv module's field limit -----------------------------------------------


def long_tweet(size: int, csv_specials: bool) -> str:
    """A tweet of ``size`` characters; with ``csv_specials`` it is full of quotes, commas and newlines."""
    unit = 'She said "no, never"\nthen left. ' if csv_specials else "plain words and #tags "
    return (unit * (size // len(unit) + 1))[:size]


@pytest.mark.parametrize("size", [FIELD_LIMIT - 1, FIELD_LIMIT, FIELD_LIMIT + 1, 4 * FIELD_LIMIT])
@pytest.mark.parametrize("suffix", [".csv", ".txt"])
def test_tweets_past_the_csv_field_limit_are_kept(tmp_path, size, suffix):
    is_csv = suffix == ".csv"
    tweets = ["short", long_tweet(size, is_csv), long_tweet(size + 7, is_csv), "last"]
    rows = [[f"r{i}", tweet, *onehot(LABELS[i])] for i, tweet in enumerate(tweets)]
    path = write_rows(tmp_path / f"long{suffix}", TRAIN_HEADER, rows, delimiter="," if is_csv else "\t")
    data = read_train(path)
    assert data.ids == ["r0", "r1", "r2", "r3"]
    assert data.texts == tweets
    assert data.labels.tolist() == [onehot(LABELS[i]) for i in range(4)]
    assert csv.field_size_limit() == FIELD_LIMIT  # the process-wide limit is put back


def test_field_limit_is_restored_after_an_error(tmp_path):
    rows = [["a", long_tweet(2 * FIELD_LIMIT, True), *onehot()], ["b", "x", *onehot()[:-1], "7"]]
    path = write_rows(tmp_path / "train.csv", TRAIN_HEADER, rows)
    with pytest.raises(DataError) as err:
        read_train(path)
    assert "'7'" in assert_names(err, path, row=3)
    assert csv.field_size_limit() == FIELD_LIMIT


@pytest.mark.parametrize(("long_row", "where"), [(1, "row 1"), (2, "row 2"), (4, "row 4 (line 5)")])
def test_csv_module_errors_are_one_line_data_errors(tmp_path, monkeypatch, long_row, where):
    # Make the csv module itself fail: the reader may lift its field limit to 40 characters only.
    monkeypatch.setattr(formats_module, "_MAX_FIELD", 40)
    header = list(TRAIN_HEADER)
    rows = [["a", "two\nlines", *onehot()], ["b", "x", *onehot()], ["c", "y", *onehot()]]
    if long_row == 1:
        header[-1] = "t" * 41
    else:
        rows[long_row - 2][1] = "x" * 41
    path = write_rows(tmp_path / "train.csv", header, rows)
    with pytest.raises(DataError) as err:
        read_train(path)
    message = assert_names(err, path, row=long_row)
    assert f": {where}: " in message
    assert "field larger than field limit" in message
    assert csv.field_size_limit() == FIELD_LIMIT


# --- header names: case, spaces, repeats --------------------------------------------------------

SPELLINGS: dict[str, Callable[[str], str]] = {
    "upper": str.upper,
    "title": str.title,
    "swapcase": str.swapcase,
    "spaces": lambda name: f"  {name} ",
    "tab-nbsp-upper": lambda name: f"\t{name.upper()}\u00a0",
    "bom": lambda name: f"\ufeff{name}",
}
HEADER_CASES = [(name, ",") for name in SPELLINGS] + [(name, "\t") for name in SPELLINGS if "tab" not in name]


@pytest.mark.parametrize(("spelling", "delimiter"), HEADER_CASES)
def test_header_names_ignore_case_and_surrounding_spaces(tmp_path, spelling, delimiter):
    order = [1, 0, *range(12, 1, -1)]  # Tweet, ID, the labels backwards
    header = [SPELLINGS[spelling](TRAIN_HEADER[i]) for i in order]
    rows = [["a", "first", *onehot("joy", "anger")], ["b", "second", *onehot()]]
    suffix = ".csv" if delimiter == "," else ".txt"
    path = write_rows(tmp_path / f"t{suffix}", header, [[row[i] for i in order] for row in rows], delimiter=delimiter)
    for reader in (read_train, read_emotion_file, read_label_file):
        data = reader(path)
        assert data.ids == ["a", "b"]
        assert data.texts == ["first", "second"]
        assert data.labels.tolist() == [onehot("joy", "anger"), onehot()]
    assert read_test(path).ids == ["a", "b"]


def test_capitalised_label_header_is_read_as_labelled(tmp_path):
    header = ["ID", "Tweet", *(label.capitalize() for label in LABELS)]
    path = write_rows(tmp_path / "train.csv", header, [["a", "x", *onehot("fear")]])
    data = read_emotion_file(path)  # what `gen-emotion check` reads; it used to say "unlabelled"
    assert data.labels is not None
    assert data.labels.tolist() == [onehot("fear")]
    none_path = write_rows(tmp_path / "test.csv", header, [["a", "x", *NONE_ROW]])
    assert read_emotion_file(none_path).labels is None


@pytest.mark.parametrize("reader", READERS)
def test_spelled_header_missing_a_label_names_it(tmp_path, reader):
    header = ["Id", "TWEET", *(label.title() for label in LABELS if label != "love")]
    path = write_rows(tmp_path / "train.csv", header, [["a", "x", *onehot()[:-1]]])
    with pytest.raises(DataError) as err:
        reader(path)
    assert "love" in assert_names(err, path, row=1)


def test_other_columns_are_ignored_even_when_repeated(tmp_path):
    header = [*TRAIN_HEADER, "output", "Output", "", "notes"]
    path = write_rows(tmp_path / "pred.csv", header, [["a", "x", *onehot("joy"), "joy", "Joy", "", "n"]])
    data = read_train(path)
    assert data.ids == ["a"]
    assert data.labels.tolist() == [onehot("joy")]


DUPLICATES = [  # (canonical column, its spelling, the spelling of the repeat)
    ("joy", "joy", "joy"),
    ("joy", "JOY ", "Joy"),
    ("ID", "ID", "id"),
    ("Tweet", "Tweet", " TWEET"),
    ("anger", "anger", "\ufeffANGER"),
    ("trust", "Trust", "trust\t"),
]


@pytest.mark.parametrize(("column", "spelled", "again"), DUPLICATES)
@pytest.mark.parametrize("values", ["equal", "conflicting"])
@pytest.mark.parametrize("reader", READERS)
def test_a_column_named_twice_is_an_error(tmp_path, column, spelled, again, values, reader):
    first = TRAIN_HEADER.index(column)
    header = [*TRAIN_HEADER, again]
    header[first] = spelled
    row: list[object] = ["a", "text", *onehot("joy", "trust")]
    repeat = row[first] if values == "equal" else {0: 1, 1: 0}.get(row[first], f"not {row[first]}")
    path = write_rows(tmp_path / "train.csv", header, [[*row, repeat]])
    with pytest.raises(DataError) as err:
        reader(path)
    message = assert_names(err, path, row=1)
    assert f"column {column!r} appears twice" in message
    assert f"columns {first + 1} {spelled!r} and {len(header)} {again!r}" in message


# --- row numbers are record numbers -------------------------------------------------------------

NOT_UTF8 = "@@NOT-UTF-8@@"


def _bad_label(row: list[object]) -> str:
    row[-1] = "2"
    return "label 'trust' is '2', expected 0 or 1"


def _short_row(row: list[object]) -> str:
    del row[-1]
    return "expected 13 fields, found 12"


def _empty_id(row: list[object]) -> str:
    row[0] = " "
    return "empty ID"


def _duplicate_id(row: list[object]) -> str:
    row[0] = "r0"
    return "duplicate ID 'r0' (first at row 2)"


def _none_labels(row: list[object]) -> str:
    row[2:] = NONE_ROW
    return "has 'NONE' labels but row 2 has 0/1 labels"


def _not_utf8(row: list[object]) -> str:
    row[1] = f"{row[1]}caf{NOT_UTF8}"
    return "not valid UTF-8 (byte 0xff on line {byte_line})"


def _too_long(row: list[object]) -> str:
    row[1] = "x" * 41  # over the 40-character limit the test sets
    return "field larger than field limit (40)"


ROW_ERRORS = [_bad_label, _short_row, _empty_id, _duplicate_id, _none_labels, _not_utf8, _too_long]


def render_csv(records: list[list[object]], newline: str, blank_after: set[int]) -> tuple[str, list[int]]:
    """CSV text with ``newline`` line ends and a blank line after the given records, and each record's first line."""
    pieces: list[str] = []
    starts: list[int] = []
    line = 1
    for index, record in enumerate(records):
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator=newline).writerow(record)
        piece = buffer.getvalue() + (newline if index in blank_after else "")
        starts.append(line)
        line += piece.count(newline)
        pieces.append(piece)
    return "".join(pieces), starts


def multiline_records(newline: str) -> list[list[object]]:
    """The header and five rows, three of them with tweets that span lines."""
    return [
        TRAIN_HEADER,
        ["r0", f"one{newline}two{newline}three", *onehot("joy")],
        ["r1", f'a, "quoted"{newline}tweet', *onehot()],
        ["r2", "plain", *onehot("anger")],
        ["r3", f"broken{newline}", *onehot("fear")],
        ["r4", "after", *onehot()],
    ]


def write_multiline(path: Path, records: list[list[object]], newline: str, bom: bool) -> list[int]:
    """Write ``records`` with a blank line after the header and after row 3; return each record's first line."""
    text, starts = render_csv(records, newline, blank_after={0, 2})
    raw = text.encode("utf-8").replace(NOT_UTF8.encode(), b"\xff")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + raw)
    return starts


NEWLINES = {"lf": "\n", "crlf": "\r\n", "cr": "\r"}


@pytest.mark.parametrize("newline", NEWLINES.values(), ids=NEWLINES.keys())
@pytest.mark.parametrize("bom", [False, True], ids=["no-bom", "bom"])
def test_multiline_tweets_crlf_and_bom_are_read(tmp_path, newline, bom):
    records = multiline_records(newline)
    path = tmp_path / "train.csv"
    write_multiline(path, records, newline, bom)
    data = read_train(path)
    assert data.ids == [record[0] for record in records[1:]]
    assert data.texts == [record[1] for record in records[1:]]
    assert data.labels.tolist() == [record[2:] for record in records[1:]]


@pytest.mark.parametrize("newline", NEWLINES.values(), ids=NEWLINES.keys())
@pytest.mark.parametrize("bom", [False, True], ids=["no-bom", "bom"])
@pytest.mark.parametrize("break_row", ROW_ERRORS, ids=lambda f: f.__name__.strip("_"))
def test_errors_name_the_record_not_the_line(tmp_path, monkeypatch, newline, bom, break_row):
    monkeypatch.setattr(formats_module, "_MAX_FIELD", 40)  # only _too_long has a field over 40 characters
    records = multiline_records(newline)
    expected = break_row(records[4])  # record 5, after tweets of 3 and 2 lines and two blank lines
    path = tmp_path / "train.csv"
    starts = write_multiline(path, records, newline, bom)
    assert starts[4] == 10
    with pytest.raises(DataError) as err:
        read_emotion_file(path)
    message = assert_names(err, path, row=5)
    assert f"{path}: row 5 (line 10): " in message
    assert expected.format(byte_line=11) in message  # the byte follows the tweet's line break


@pytest.mark.parametrize("newline", NEWLINES.values(), ids=NEWLINES.keys())
def test_header_after_blank_lines_is_row_1(tmp_path, newline):
    header = ["ID", "Text", *LABELS]
    text, _ = render_csv([header, ["a", "x", *onehot()]], newline, blank_after=set())
    path = tmp_path / "train.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (newline * 2 + text).encode())
    with pytest.raises(DataError) as err:
        read_train(path)
    assert f"{path}: row 1 (line 3): missing column 'Tweet'" in assert_names(err, path, row=1)


# --- properties ---------------------------------------------------------------------------------

SPECIAL_CHARS = "\",;'\n\r\t \u00a0\ufeff\x00\x0b\x1c\x85\u2028#@\\"


def chars(exclude: str = "") -> st.SearchStrategy[str]:
    """Any character that UTF-8 can hold, CSV and white-space specials often, none of ``exclude``."""
    specials = [char for char in SPECIAL_CHARS if char not in exclude]
    return st.one_of(st.sampled_from(specials), st.characters(codec="utf-8", exclude_characters=exclude))


def valid_rows(alphabet: st.SearchStrategy[str]) -> st.SearchStrategy[list[tuple[str, str, list[int]]]]:
    """1-8 rows of (ID, tweet, 0/1 labels): unique IDs without surrounding white space, texts of ``alphabet``."""
    row_id = st.text(alphabet, min_size=1, max_size=8).map(str.strip).filter(bool)
    vector = st.lists(st.integers(0, 1), min_size=11, max_size=11)
    row = st.tuples(row_id, st.text(alphabet, max_size=30), vector)
    return st.lists(row, min_size=1, max_size=8, unique_by=lambda r: r[0])


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[bytes, list[tuple[str, str, list[int]]], bool]:
    """A CSV file written by the csv module: (its bytes, its rows, whether labelled) with any header spelling."""
    newline = draw(st.sampled_from(["\r\n", "\n"]))
    # csv.writer quotes a lone "\r" only when it is part of its line terminator: a "\n" file cannot hold one.
    rows = draw(valid_rows(chars("" if newline == "\r\n" else "\r")))
    labelled = draw(st.booleans())
    order = draw(st.permutations(range(len(TRAIN_HEADER))))
    spell = SPELLINGS[draw(st.sampled_from(sorted(SPELLINGS)))] if draw(st.booleans()) else str
    buffer = io.StringIO()
    writer = csv.writer(
        buffer, lineterminator=newline, quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    )
    writer.writerow([spell(TRAIN_HEADER[i]) for i in order])
    for row_id, tweet, vector in rows:
        fields = [row_id, tweet, *(vector if labelled else NONE_ROW)]
        writer.writerow([fields[i] for i in order])
    bom = b"\xef\xbb\xbf" if draw(st.booleans()) else b""
    return bom + buffer.getvalue().encode("utf-8"), rows, labelled


def read_bytes_as(raw: bytes, name: str, reader: Callable[[Path], EmotionData]) -> EmotionData:
    """Write ``raw`` to a fresh temporary file called ``name`` and read it with ``reader``."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(raw)
        return reader(path)


@PROPERTY
@given(file=csv_files())
def test_valid_csv_rows_round_trip(file):
    raw, rows, labelled = file
    data = read_bytes_as(raw, "data.csv", read_train if labelled else read_test)
    assert data.ids == [row[0] for row in rows]
    assert data.texts == [row[1] for row in rows]
    if labelled:
        assert data.labels.tolist() == [row[2] for row in rows]
    else:
        assert data.labels is None


@PROPERTY
@given(rows=valid_rows(chars("\t\r\n")), newline=st.sampled_from(["\n", "\r\n"]))
def test_valid_semeval_rows_round_trip(rows, newline):
    lines = ["\t".join(TRAIN_HEADER)] + ["\t".join([i, t, *map(str, v)]) for i, t, v in rows]
    data = read_bytes_as((newline.join(lines) + newline).encode("utf-8"), "E-c.txt", read_train)
    assert data.ids == [row[0] for row in rows]
    assert data.texts == [row[1] for row in rows]
    assert data.labels.tolist() == [row[2] for row in rows]


FRAGMENTS = [
    *(char.encode() for char in ',\t"\n\r 01x\x00'),
    *(b"\r\n", b"\xef\xbb\xbf", b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", "é".encode()),
    *(b"NONE", b"ID", b"Tweet", b"Joy", b"joy", b",0" * 11, b",1" * 11, b",NONE" * 11),
]
TEXT_FRAGMENTS = [
    fragment for fragment in FRAGMENTS if fragment.decode("utf-8", "replace") == fragment.decode("latin-1")
]
HEADER_LINE = ",".join(TRAIN_HEADER).encode() + b"\n"
VALID_FILE = HEADER_LINE + b'a,"multi\nline, ""tweet""",' + b",".join([b"0"] * 11) + b"\nb,y" + b",1" * 11 + b"\n"


@st.composite
def edited_valid_file(draw: st.DrawFn) -> bytes:
    """A valid file with 1-4 random byte-range replacements."""
    raw = bytearray(VALID_FILE)
    pieces = st.lists(st.sampled_from(FRAGMENTS), max_size=4).map(b"".join)
    for position, piece, cut in draw(
        st.lists(st.tuples(st.integers(0, len(raw)), pieces, st.integers(0, 4)), min_size=1, max_size=4)
    ):
        raw[position : position + cut] = piece
    return bytes(raw)


@st.composite
def odd_rows(draw: st.DrawFn) -> bytes:
    """A header and 1-5 lines of 13 fields: IDs and tweets of random fragments, labels of 0/1 or NONE variants."""
    piece = st.lists(st.sampled_from(TEXT_FRAGMENTS), max_size=3).map(b"".join)
    value = st.sampled_from([b"0"] * 8 + [b"1"] * 8 + [b" 1 ", b'"0"', b"2", b"NONE"])
    labels = st.one_of(st.lists(value, min_size=11, max_size=11), st.just([b"NONE"] * 11), st.just([b"none"] * 11))
    field = st.one_of(piece, piece.map(lambda raw: b'"' + raw.replace(b'"', b'""') + b'"'))
    row_id = st.one_of(st.text("ab7 ", min_size=1, max_size=4).map(str.encode), field)
    line = st.tuples(row_id, field, labels)
    lines = [
        b",".join([row_id, tweet, *values]) for row_id, tweet, values in draw(st.lists(line, min_size=1, max_size=5))
    ]
    return HEADER_LINE + draw(st.sampled_from([b"\n", b"\r\n"])).join(lines)


ODD_FILES = st.one_of(
    odd_rows(),
    st.binary(max_size=200),
    st.lists(st.sampled_from(FRAGMENTS), max_size=40).map(b"".join),
    st.lists(st.sampled_from(FRAGMENTS), max_size=40).map(lambda pieces: HEADER_LINE + b"".join(pieces)),
    edited_valid_file(),
)


def check_read_result(reader: Callable[[Path], EmotionData], path: Path, raw: bytes) -> None:
    """``reader`` gives consistent rows from UTF-8 text, or a one-line ``DataError`` naming ``path``."""
    try:
        data = reader(path)
    except DataError as err:
        event(f"{reader.__name__}: error")
        message = str(err)
        assert len(message.splitlines()) == 1, message
        assert message.startswith(f"{path}: "), message
        return
    event(f"{reader.__name__}: rows")
    raw.decode("utf-8")  # rows only ever come from valid UTF-8
    assert len(data) == len(data.texts) >= 1
    assert all(isinstance(i, str) and i and i == i.strip() for i in data.ids)
    assert len(set(data.ids)) == len(data)
    if data.labels is not None:
        assert data.labels.shape == (len(data), 11)
        assert set(np.unique(data.labels)) <= {0, 1}


@settings(max_examples=200, deadline=None, database=None)
@given(raw=ODD_FILES, suffix=st.sampled_from([".csv", ".txt"]))
def test_any_bytes_give_rows_or_a_data_error(raw, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"odd{suffix}"
        path.write_bytes(raw)
        for reader in READERS:
            check_read_result(reader, path, raw)
    assert csv.field_size_limit() == FIELD_LIMIT


# --- the real Kaggle file -----------------------------------------------------------------------


@pytest.mark.skipif(
    not (SHARED_DATA / "train.csv").is_file(), reason=f"Kaggle data not available at {SHARED_DATA}/train.csv"
)
def test_real_train_file():
    data = read_train(SHARED_DATA / "train.csv")
    assert len(data) == 7724
    assert data.labels.shape == (7724, 11)
    assert len(set(data.ids)) == 7724
    counts = label_counts(data.labels)
    assert counts["surprise"] == 396
    assert counts["trust"] == 400
