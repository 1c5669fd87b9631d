"""Reading and validating tweet files, and the multilabel-stratified folds."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import LABEL_HEADER, TRAIN_HEADER, onehot, write_rows

from gen_emotion.data import (
    DataError,
    EmotionData,
    fold_indices,
    label_counts,
    read_emotion_file,
    read_label_file,
    read_test,
    read_train,
    split_fold,
)
from gen_emotion.errors import GenEmotionError
from gen_emotion.labels import LABELS

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
NONE_ROW = ["NONE"] * 11


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
    message = assert_names(err, path)
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


# --- folds --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_labels() -> np.ndarray:
    rng = np.random.default_rng(2018)
    rates = np.linspace(0.2, 0.4, 11)
    return (rng.random((500, 11)) < rates).astype(np.int64)


@pytest.fixture(scope="module")
def folds(synthetic_labels):
    return fold_indices(synthetic_labels, n_splits=10, seed=42)


def test_fold_count_and_types(folds, synthetic_labels):
    assert len(folds) == 10
    for train_idx, val_idx in folds:
        assert train_idx.dtype.kind == "i"
        assert val_idx.dtype.kind == "i"
        assert len(train_idx) + len(val_idx) == len(synthetic_labels)
        assert 40 <= len(val_idx) <= 60


def test_folds_are_deterministic(folds, synthetic_labels):
    again = fold_indices(synthetic_labels, n_splits=10, seed=42)
    for (a_tr, a_va), (b_tr, b_va) in zip(folds, again):
        assert np.array_equal(a_tr, b_tr)
        assert np.array_equal(a_va, b_va)
    other = fold_indices(synthetic_labels, n_splits=10, seed=7)
    assert any(not np.array_equal(a_va, b_va) for (_, a_va), (_, b_va) in zip(folds, other))


def test_validation_folds_partition_the_rows(folds, synthetic_labels):
    n = len(synthetic_labels)
    all_val = np.concatenate([val_idx for _, val_idx in folds])
    assert sorted(all_val.tolist()) == list(range(n))  # every row exactly once
    for train_idx, val_idx in folds:
        assert not set(train_idx.tolist()) & set(val_idx.tolist())
        assert sorted(np.concatenate([train_idx, val_idx]).tolist()) == list(range(n))
        assert np.all(np.diff(train_idx) > 0)  # sorted, no repeats
        assert np.all(np.diff(val_idx) > 0)


def test_folds_are_stratified(folds, synthetic_labels):
    overall = synthetic_labels.mean(axis=0)
    deviation = np.array([np.abs(synthetic_labels[val].mean(axis=0) - overall) for _, val in folds])
    assert deviation.shape == (10, 11)
    # A random fold of m = 50 rows has a positive rate with standard error sqrt(p (1 - p) / m) ~ 0.065
    # at p = 0.3, so a plain random split gives a mean absolute deviation of about 0.8 * 0.065 = 0.052
    # and only ~56% of (fold, label) cells within 0.05. Iterative stratification is far tighter on
    # average (though a few cells can still be off where 11 dense labels compete).
    assert deviation.mean() <= 0.03, deviation.mean()
    assert (deviation <= 0.05).mean() >= 0.8, (deviation <= 0.05).mean()
    assert deviation.max() <= 0.25, deviation.max()


def test_fold_errors(synthetic_labels):
    with pytest.raises(GenEmotionError, match="at least 2"):
        fold_indices(synthetic_labels, n_splits=1)
    with pytest.raises(GenEmotionError, match="cannot split 5 rows"):
        fold_indices(synthetic_labels[:5], n_splits=10)


def _data_from(labels: np.ndarray) -> EmotionData:
    n = len(labels)
    return EmotionData(ids=[f"id{i:04d}" for i in range(n)], texts=[f"t{i}" for i in range(n)], labels=labels)


def test_split_fold_returns_file_ordered_subsets(synthetic_labels, folds):
    data = _data_from(synthetic_labels)
    for fold in (0, 3, 9):
        train, held = split_fold(data, fold, n_splits=10, seed=42)
        train_idx, val_idx = folds[fold]
        assert held.ids == [data.ids[i] for i in val_idx]
        assert train.ids == [data.ids[i] for i in train_idx]
        assert held.ids == sorted(held.ids)  # file order (IDs were written in order)
        assert train.ids == sorted(train.ids)
        assert held.texts == [data.texts[i] for i in val_idx]
        assert np.array_equal(held.labels, synthetic_labels[val_idx])
        assert np.array_equal(train.labels, synthetic_labels[train_idx])
        assert not set(train.ids) & set(held.ids)
        assert len(train) + len(held) == len(data)


def test_split_fold_errors(synthetic_labels):
    data = _data_from(synthetic_labels)
    with pytest.raises(GenEmotionError, match="fold"):
        split_fold(data, 10, n_splits=10)
    with pytest.raises(GenEmotionError, match="fold"):
        split_fold(data, -1, n_splits=10)
    unlabelled = EmotionData(ids=["a", "b"], texts=["x", "y"], labels=None, source="t.csv")
    with pytest.raises(GenEmotionError, match="t.csv"):
        split_fold(unlabelled, 0)


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
