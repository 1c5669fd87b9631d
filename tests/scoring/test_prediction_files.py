"""Prediction files and the Kaggle submission."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import LABEL_HEADER, TRAIN_HEADER, onehot, write_rows
from hypothesis import given, settings
from hypothesis import strategies as st

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.labels import LABELS
from gen_emotion.data.dataset import DataError
from gen_emotion.data.formats import read_label_file, read_test
from gen_emotion.scoring.prediction_files import (
    align,
    export_submission,
    reindex,
    write_predictions,
    write_submission,
)


def read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


@pytest.fixture
def tiny_test(tmp_path) -> Path:
    rows = [[f"t{i}", f"tweet {i}", *["NONE"] * 11] for i in range(6)]
    return write_rows(tmp_path / "test.csv", TRAIN_HEADER, rows)


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    """Write with the csv module's default dialect (it quotes any field holding a quote, comma, CR or LF)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def labels_for(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((n, 11)) < 0.3).astype(np.int64)


def test_write_predictions_round_trip(tmp_path):
    ids = ["2017-00001", "00123", "x"]
    labels = labels_for(3)
    path = tmp_path / "out" / "pred.csv"  # the folder is created
    write_predictions(path, ids, labels)
    rows = read_rows(path)
    assert rows[0] == ["ID", *LABELS]
    assert [row[0] for row in rows[1:]] == ids
    back = read_label_file(path)
    assert back.ids == ids
    assert np.array_equal(back.labels, labels)
    assert not list(path.parent.glob(".*.tmp"))  # no temp file left behind


def test_write_predictions_with_outputs(tmp_path):
    ids = ["a", "b", "c"]
    labels = np.array([onehot("anger"), onehot(), onehot("joy", "love")])
    outputs = ["anger", 'none, "quoted", with commas\nand a newline', "joy, love<|im_end|>"]
    path = tmp_path / "pred.csv"
    write_predictions(path, ids, labels, outputs)
    rows = read_rows(path)
    assert rows[0] == ["ID", *LABELS, "output"]
    assert [row[-1] for row in rows[1:]] == outputs
    back = read_label_file(path)
    assert back.ids == ids
    assert np.array_equal(back.labels, labels)


def test_write_predictions_errors(tmp_path):
    with pytest.raises(ValueError):
        write_predictions(tmp_path / "p.csv", ["a", "b"], labels_for(3))
    with pytest.raises(ValueError):
        write_predictions(tmp_path / "p.csv", ["a"], labels_for(1), outputs=["x", "y"])
    with pytest.raises(ValueError):
        write_predictions(tmp_path / "p.csv", ["a"], np.full((1, 11), 2))
    assert not (tmp_path / "p.csv").exists()


def test_export_submission_in_test_order(tmp_path, tiny_test):
    test_ids = read_test(tiny_test).ids
    labels = labels_for(len(test_ids), seed=3)
    order = np.random.default_rng(1).permutation(len(test_ids))
    assert not np.array_equal(order, np.arange(len(test_ids)))
    pred = tmp_path / "pred.csv"
    write_predictions(pred, [test_ids[i] for i in order], labels[order])
    out = tmp_path / "sub" / "submission.csv"
    assert export_submission(pred, tiny_test, out) == len(test_ids)
    rows = read_rows(out)
    assert rows[0] == ["ID", *LABELS]
    assert [row[0] for row in rows[1:]] == test_ids
    assert [[int(v) for v in row[1:]] for row in rows[1:]] == labels.tolist()
    assert all(v in {"0", "1"} for row in rows[1:] for v in row[1:])  # integers, not 0.0 / True


def test_export_drops_the_output_column(tmp_path, tiny_test):
    test_ids = read_test(tiny_test).ids
    pred = tmp_path / "pred.csv"
    write_predictions(pred, test_ids, labels_for(len(test_ids)), outputs=["x"] * len(test_ids))
    out = tmp_path / "submission.csv"
    export_submission(pred, tiny_test, out)
    assert read_rows(out)[0] == ["ID", *LABELS]


def test_export_missing_test_id(tmp_path, tiny_test):
    test_ids = read_test(tiny_test).ids
    pred = tmp_path / "pred.csv"
    write_predictions(pred, test_ids[:-1], labels_for(len(test_ids) - 1))
    out = tmp_path / "submission.csv"
    with pytest.raises(GenEmotionError, match=test_ids[-1]):
        export_submission(pred, tiny_test, out)
    assert not out.exists()


def test_export_extra_id(tmp_path, tiny_test):
    test_ids = read_test(tiny_test).ids
    pred = tmp_path / "pred.csv"
    write_predictions(pred, [*test_ids, "intruder"], labels_for(len(test_ids) + 1))
    out = tmp_path / "submission.csv"
    with pytest.raises(GenEmotionError, match="intruder"):
        export_submission(pred, tiny_test, out)
    assert not out.exists()


def test_export_duplicated_prediction_id(tmp_path, tiny_test):
    test_ids = read_test(tiny_test).ids
    rows = [[row_id, *onehot()] for row_id in test_ids] + [[test_ids[2], *onehot("joy")]]
    pred = write_rows(tmp_path / "pred.csv", LABEL_HEADER, rows)
    out = tmp_path / "submission.csv"
    with pytest.raises(DataError, match="duplicate ID 't2'") as err:
        export_submission(pred, tiny_test, out)
    assert str(pred) in str(err.value)
    assert not out.exists()


def test_export_prediction_with_bad_label(tmp_path, tiny_test):
    test_ids = read_test(tiny_test).ids
    rows = [[row_id, *onehot()] for row_id in test_ids]
    rows[1][1] = "0.7"
    pred = write_rows(tmp_path / "pred.csv", LABEL_HEADER, rows)
    with pytest.raises(DataError, match="row 3"):
        export_submission(pred, tiny_test, tmp_path / "submission.csv")


def test_align_errors():
    from gen_emotion.data.dataset import EmotionData

    preds = EmotionData(ids=["a", "b"], texts=["", ""], labels=np.array([onehot("joy"), onehot()]), source="p.csv")
    assert align(["b", "a"], preds).tolist() == [onehot(), onehot("joy")]
    with pytest.raises(GenEmotionError, match="repeats"):
        align(["a", "b", "a"], preds)
    unlabelled = EmotionData(ids=["a"], texts=[""], labels=None, source="p.csv")
    with pytest.raises(GenEmotionError, match="p.csv"):
        align(["a"], unlabelled)


def test_reindex_puts_rows_in_the_asked_order_and_may_take_a_subset():
    values = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    assert reindex(values, ["x", "y", "z"], ["z", "x"]).tolist() == [[0.0, 1.0], [1.0, 0.0]]
    assert reindex(values, ["x", "y", "z"], ["x", "y", "z"]).tolist() == values.tolist()
    with pytest.raises(KeyError):  # the callers check coverage first; an unchecked gap is a bug, not a user's error
        reindex(values, ["x", "y", "z"], ["w"])


def test_write_submission_rejects_repeated_ids(tmp_path):
    with pytest.raises(GenEmotionError, match="repeat"):
        write_submission(tmp_path / "s.csv", ["a", "a"], labels_for(2))


def test_header_matches_sample_submission(tmp_path, sample_dir):
    sample_header = read_rows(sample_dir / "sample_submission.csv")[0]
    assert sample_header == ["ID", *LABELS]
    assert (
        ",".join(sample_header)
        == "ID,anger,anticipation,disgust,fear,joy,love,optimism,pessimism,sadness,surprise,trust"
    )
    gold = read_label_file(sample_dir / "test_labels.csv")
    pred = tmp_path / "pred.csv"
    write_predictions(pred, gold.ids[::-1], gold.labels[::-1])
    out = tmp_path / "submission.csv"
    assert export_submission(pred, sample_dir / "test.csv", out) == 80
    assert out.read_text(encoding="utf-8").splitlines()[0] == ",".join(sample_header)
    sample_ids = [row[0] for row in read_rows(sample_dir / "sample_submission.csv")[1:]]
    assert [row[0] for row in read_rows(out)[1:]] == sample_ids
    assert np.array_equal(read_label_file(out).labels, gold.labels)


ID_CHARS = st.one_of(st.sampled_from(list('",\n\r\t \ufeff\x00')), st.characters(codec="utf-8"))
IDS = st.lists(
    st.text(ID_CHARS, min_size=1, max_size=8).map(str.strip).filter(bool), min_size=1, max_size=12, unique=True
)


@settings(max_examples=40, deadline=None, database=None)
@given(ids=IDS, data=st.data(), with_output=st.booleans())
def test_export_submission_writes_the_test_order_for_any_permutation(tmp_path_factory, ids, data, with_output):
    n = len(ids)
    labels = data.draw(st.lists(st.lists(st.integers(0, 1), min_size=11, max_size=11), min_size=n, max_size=n))
    order = data.draw(st.permutations(range(n)))
    folder = tmp_path_factory.mktemp("export")
    test_rows = [[row_id, f'tweet, "{k}"\n', *["NONE"] * 11] for k, row_id in enumerate(ids)]
    test = write_csv(folder / "test.csv", TRAIN_HEADER, test_rows)
    output = ['raw, "output"\n'] if with_output else []
    pred_header = LABEL_HEADER + (["output"] if with_output else [])
    pred = write_csv(folder / "pred.csv", pred_header, [[ids[i], *labels[i], *output] for i in order])
    out = folder / "submission.csv"
    assert export_submission(pred, test, out) == n
    rows = read_rows(out)
    assert rows[0] == ["ID", *LABELS]
    assert [row[0] for row in rows[1:]] == ids
    assert [[int(v) for v in row[1:]] for row in rows[1:]] == labels
