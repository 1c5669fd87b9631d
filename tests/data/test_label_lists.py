"""A column of label lists (``label_lists``): class ids of a ``ClassLabel`` feature or label names, in every table
format, and each kind of bad list as one line naming the file or split, the row and the value."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.data.dataset import Columns
from gen_emotion.data.formats import read_emotion_file, read_test, read_train
from gen_emotion.data.label_lists import ListColumn, label_rows

NAMES = ("anger", "joy", "sadness", "neutral")
LISTED = Columns(id="id", text="text", labels=None, label_column="labels", none_label="neutral")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_names_from_the_lists_sorted_with_the_none_label_for_an_empty_list(tmp_path):
    rows = [
        {"id": "a", "text": "so happy", "labels": ["joy"]},
        {"id": "b", "text": "angry and sad", "labels": ["sadness", "anger"]},
        {"id": "c", "text": "the bus", "labels": []},
    ]
    data = read_train(write_jsonl(tmp_path / "train.jsonl", rows), LISTED)
    assert data.label_names == ("anger", "joy", "sadness", "neutral") and data.ids == ["a", "b", "c"]
    assert data.labels.tolist() == [[0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]]
    # the recipe's own order, and a file to predict whose label column is not read (here: absent)
    ordered = read_train(
        tmp_path / "train.jsonl", Columns("id", "text", ("sadness", "joy", "anger", "neutral"), "labels", "neutral")
    )
    assert ordered.labels[1].tolist() == [1, 0, 1, 0]
    write_jsonl(tmp_path / "test.jsonl", [{"id": "t", "text": "hm"}])
    test = read_test(tmp_path / "test.jsonl", Columns("id", "text", NAMES, "labels", "neutral"))
    assert test.labels is None and test.label_names == NAMES and test.ids == ["t"]


def test_class_ids_of_a_classlabel_feature_in_parquet_and_datasets_folders(tmp_path):
    from datasets import ClassLabel, Dataset, Features, Sequence, Value

    features = Features({"id": Value("string"), "text": Value("string"), "labels": Sequence(ClassLabel(names=NAMES))})
    rows = {"id": ["a", "b"], "text": ["x", "y"], "labels": [[1], [0, 2]]}
    dataset = Dataset.from_dict(rows, features=features)
    dataset.to_parquet(str(tmp_path / "train.parquet"))  # datasets keeps the feature in the file's metadata
    dataset.save_to_disk(str(tmp_path / "train"))
    for path in (tmp_path / "train.parquet", tmp_path / "train"):
        data = read_train(path, LISTED)
        assert data.label_names == NAMES and data.labels.tolist() == [[0, 1, 0, 0], [1, 0, 1, 0]]
    # ids without a ClassLabel feature index the recipe's labels
    write_jsonl(tmp_path / "ids.jsonl", [{"id": "a", "text": "x", "labels": [3, 1]}])
    assert read_train(tmp_path / "ids.jsonl", Columns("id", "text", NAMES, "labels")).labels.tolist() == [[0, 1, 0, 1]]


def test_a_single_classlabel_id_a_row_is_a_list_of_one():
    spec = ListColumn("label", None, NAMES)
    names, labels = label_rows("emotion, train split", spec, [("row 0", 2), ("row 1", 0)])
    assert names == NAMES and labels.tolist() == [[0, 0, 1, 0], [1, 0, 0, 0]]


@pytest.mark.parametrize(
    ("values", "spec", "message"),
    [
        ([["joy"], ["joyy"]], ListColumn("labels", NAMES), "row 1: unknown label 'joyy' (labels: anger, joy"),
        ([[1], [4]], ListColumn("labels", None, NAMES), "row 1: class id 4 is out of range (0..3, 4 labels)"),
        ([[1], [-1]], ListColumn("labels", NAMES), "row 1: class id -1 is out of range"),
        ([["joy"], []], ListColumn("labels", ("anger", "joy")), "row 1: an empty label list, and no data.none_label"),
        ([["joy", 1]], ListColumn("labels", NAMES), "row 0: the label list ['joy', 1] mixes class ids and names"),
        (
            [["joy"], [2]],
            ListColumn("labels", NAMES),
            "row 1: class ids [2], but row 0 holds label names ['joy'] (mixed",
        ),
        ([["joy"], "joy"], ListColumn("labels", NAMES), "row 1: column 'labels' holds 'joy', expected a list"),
        ([["joy"], None], ListColumn("labels", NAMES), "row 1: column 'labels' is empty (null), expected a list"),
        ([[1.5]], ListColumn("labels", NAMES), "row 0: the label list [1.5] holds 1.5; expected class ids or names"),
        ([[0]], ListColumn("labels", None), "row 0: class ids [0], but column 'labels' has no ClassLabel names; give"),
    ],
)
def test_bad_lists_are_one_line_naming_the_split_row_and_value(values, spec, message):
    rows = [(f"row {i}", value) for i, value in enumerate(values)]
    with pytest.raises(GenEmotionError) as err:
        label_rows("go_emotions (simplified), train split", spec, rows)
    text = str(err.value)
    assert "\n" not in text and text.startswith("go_emotions (simplified), train split: row ")
    assert message in text, text


def test_bad_lists_in_a_file_name_the_file_row_and_line(tmp_path):
    path = write_jsonl(
        tmp_path / "train.jsonl",
        [{"id": "a", "text": "x", "labels": ["joy"]}, {"id": "b", "text": "y", "labels": ["glee"]}],
    )
    with pytest.raises(GenEmotionError, match=re.escape(f"{path}: row 3 (line 2): unknown label 'glee'")):
        read_train(path, Columns("id", "text", NAMES, "labels", "neutral"))
    (tmp_path / "train.csv").write_text("id,text,labels\na,x,joy\n", encoding="utf-8")
    with pytest.raises(GenEmotionError, match="a CSV cell holds no list: use JSON Lines"):
        read_train(tmp_path / "train.csv", LISTED)
    write_jsonl(tmp_path / "nested.jsonl", [{"id": ["a"], "text": "x", "labels": ["joy"]}])
    with pytest.raises(GenEmotionError, match=re.escape("row 2 (line 1): column 'id' holds ['a'], expected a value")):
        read_train(tmp_path / "nested.jsonl", LISTED)
    with pytest.raises(GenEmotionError, match="missing label column 'labels'"):
        read_train(write_jsonl(tmp_path / "none.jsonl", [{"id": "a", "text": "x"}]), LISTED)


def test_check_counts_a_list_column_and_without_labels_reads_none(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"id": "a", "text": "x", "labels": None}])
    assert read_emotion_file(path, columns=LISTED).labels is None
    path = write_jsonl(tmp_path / "u.jsonl", [{"id": "a", "text": "x", "labels": ["joy"]}])
    assert np.array_equal(read_emotion_file(path, columns=LISTED).labels, [[1, 0]])
