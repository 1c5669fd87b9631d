"""Any label set (``labels.LabelSet``): rendering, the grammar, parsing, the recipe's ``data.labels``, the data
formats, and the whole pipeline on the shipped six-label sample (``gen_emotion/sample_data/six_labels``)."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
from conftest import SAMPLE_DIR, first_rows

from gen_emotion.cli.parser import main
from gen_emotion.config.recipes import columns, label_set, load_recipe, with_header_labels
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.labels import SEMEVAL, LabelSet
from gen_emotion.data.dataset import Columns
from gen_emotion.data.formats import read_test, read_train
from gen_emotion.generation.parsing import parse
from gen_emotion.generation.prompts import build_messages, load_templates

SIX = SAMPLE_DIR / "six_labels"
RECIPE = "recipes/own-labels-example.yaml"
NAMES = ("anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral")


@pytest.fixture
def six() -> LabelSet:
    return label_set(load_recipe(RECIPE))


def test_the_example_recipe_reads_its_labels_aliases_and_descriptions(six):
    assert six.names == NAMES and six.none_label == "neutral" and six.targets == NAMES[:-1]
    assert six.alias_map()["scared"] == "fear" and six.description("joy") == "happiness, delight"
    assert label_set(load_recipe("recipes/smollm2-135m-cpu.yaml")) is SEMEVAL


def test_the_none_label_is_what_the_model_writes_for_none(six):
    empty = np.zeros(7, dtype=int)
    assert six.render(empty) == "neutral" and six.render(empty, "python_list") == "[]"
    assert six.render(six.vector_from_names(["joy", "fear"])) == "fear, joy"
    assert six.vector_from_names([]).tolist() == [0, 0, 0, 0, 0, 0, 1]
    assert six.vector_from_names(["joy", "neutral"]).tolist() == [0, 0, 0, 1, 0, 0, 0]  # neutral only alone
    regex = re.compile(six.output_regex())
    assert regex.fullmatch("neutral") and regex.fullmatch("anger, surprise") and not regex.fullmatch("none")
    assert not regex.fullmatch("surprise, anger") and not regex.fullmatch("anger, neutral")


def test_parsing_follows_the_label_set(six):
    assert parse("fear, joy", six).tolist() == [0, 0, 1, 1, 0, 0, 0]
    assert parse("neutral", six).tolist() == [0, 0, 0, 0, 0, 0, 1]
    assert parse("I feel happy but not scared<|im_end|>", six).tolist() == [0, 0, 0, 1, 0, 0, 0]  # aliases, negation
    assert parse("nothing here", six).tolist() == [0, 0, 0, 0, 0, 0, 1]
    assert parse("love", six).sum() == 1 and parse("love", six)[-1] == 1  # not a label of this set
    assert parse("anger, joy").tolist() == parse("anger, joy", SEMEVAL).tolist()  # the default is unchanged


@pytest.mark.parametrize(
    ("spec", "none_label", "message"),
    [
        ([], None, "at least one label"),
        (["joy", "joy"], None, "given twice"),
        (["joy", "a, b"], None, "no comma"),
        (["joy"], "neutral", "not one of the labels"),
        (["neutral"], "neutral", "besides its none_label"),
        (["joy", "none"], None, "must be the set's none_label"),
        ([{"name": "joy", "colour": "red"}], None, "a mapping of name"),
        ([{"name": "joy", "aliases": ["glad"]}, {"name": "sad", "aliases": "down"}], None, None),
    ],
)
def test_label_specs_are_checked(spec, none_label, message):
    if message is None:
        assert LabelSet.from_spec(spec, none_label).alias_map()["down"] == "sad"
        return
    with pytest.raises(ValueError, match=message):
        LabelSet.from_spec(spec, none_label)


def test_recipes_refuse_bad_label_settings(capsys):
    for override, message in (
        ("data.labels=joy", "data.labels must be a list of labels or from_data"),
        ("data.none_label=calm", "none_label 'calm' is not one of the labels"),
        ("data.labels=[joy,joy]", "'joy' is given twice"),
    ):
        assert main(["show", RECIPE, override]) == 2
        assert message in capsys.readouterr().err


def test_labels_from_the_header_resolve_once_from_the_training_file(tmp_path):
    recipe = load_recipe(RECIPE, ["data.labels=from_header"])
    assert columns(recipe).labels is None
    full = read_train(SIX / "train.jsonl", columns(recipe))
    assert full.label_names == NAMES and full.labels.shape == (300, 7)
    resolved = with_header_labels(recipe, full.label_names)
    assert label_set(resolved).names == NAMES and label_set(resolved).none_label == "neutral"
    with pytest.raises(ValueError, match="from_header"):
        label_set(recipe)


def test_the_default_prompt_of_the_semeval_labels_is_unchanged():
    system = build_messages("x", load_templates("default"))[0]["content"]
    assert system == (
        "Which of these emotions does the tweet express: anger, anticipation, disgust, fear, joy, love, optimism, "
        "pessimism, sadness, surprise, trust? Answer with those that apply, in this order, or none."
    )


def test_the_described_prompt_lists_labels_descriptions_and_the_none_text(six):
    system = build_messages("x", load_templates("described", six))[0]["content"]
    assert "- fear: worry, anxiety, terror" in system and "or neutral if none applies" in system
    assert "neutral:" not in system and "- neutral" not in system


# --- formats ----------------------------------------------------------------------------------------------------


def sample_rows(n: int = 12) -> list[dict]:
    return [json.loads(line) for line in (SIX / "train.jsonl").read_text().splitlines()[:n]]


def test_jsonl_parquet_and_datasets_folders_read_alike(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset

    rows = sample_rows()
    cols = Columns("text_id", "text", None)
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet")
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "t"))
    read = [read_train(tmp_path / name, cols) for name in ("t.jsonl", "t.parquet", "t")]
    for data in read:
        assert data.ids == [r["text_id"] for r in rows] and data.texts == [r["text"] for r in rows]
        assert data.label_names == NAMES and np.array_equal(data.labels, read[0].labels)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text_id": "a", "text": "x", "joy": 1}\n[1, 2]\n', "line 2: expected a JSON object"),
        ('{"text_id": "a", "text": "x", "joy": 1}\n{"text_id": "b"}\n', "line 2: its keys differ"),
        ('{"text_id": "a", "text": "x", "joy": 1}\n{"text_id"\n', "line 2: not valid JSON"),
        ('{"text_id": "a", "text": "x", "joy": 2}\n', "row 2 (line 1): label 'joy' is '2'"),
        ('{"text_id": "a", "text": "x", "joy": 1}\n{"text_id": "a", "text": "y", "joy": 0}\n', "duplicate ID"),
    ],
)
def test_bad_jsonl_is_one_line_naming_the_line(content, message, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(GenEmotionError, match=re.escape(message)):
        read_train(path, Columns("text_id", "text", None))


def test_a_test_file_without_label_columns_and_nulls(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text('{"text_id": "a", "text": "x", "joy": null}\n{"text_id": "b", "text": "y", "joy": null}\n')
    assert read_test(path, Columns("text_id", "text", ("joy",))).ids == ["a", "b"]
    with pytest.raises(GenEmotionError, match="not a datasets folder"):
        read_train(tmp_path, Columns())


# --- the pipeline on another label set ------------------------------------------------------------------------


def test_tfidf_run_and_cv_on_the_six_label_sample(tmp_path, capsys):
    assert main(["run", RECIPE, "task=tfidf", "--data", str(SIX), "--out", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert list(metrics["held_out"]["per_label"]) == list(NAMES)
    with (tmp_path / "run" / "submission.csv").open(newline="") as handle:
        submission = list(csv.reader(handle))
    assert submission[0] == ["text_id", *NAMES] and len(submission) == 81
    assert main(["cv", RECIPE, "task=tfidf", "--data", str(SIX), "--folds", "3", "--out", str(tmp_path / "cv")]) == 0
    assert (
        main(
            [
                "cv",
                RECIPE,
                "task=tfidf",
                "classifier.char_ngrams=false",
                "--data",
                str(SIX),
                "--folds",
                "3",
                "--out",
                str(tmp_path / "cv2"),
            ]
        )
        == 0
    )
    assert main(["ensemble", str(tmp_path / "cv"), str(tmp_path / "cv2"), "--out", str(tmp_path / "ens")]) == 0
    assert main(["report", str(tmp_path / "cv"), str(tmp_path / "ens"), "--out", str(tmp_path / "report")]) == 0
    assert "| neutral |" in (tmp_path / "report" / "report.md").read_text()
    capsys.readouterr()
    gold = SIX / "test_labels.csv"
    assert main(["score", str(tmp_path / "run" / "test_predictions.csv"), str(gold), "--recipe", RECIPE]) == 0
    assert "neutral" in capsys.readouterr().out
    semeval = tmp_path / "semeval"
    assert main(["cv", "recipes/tfidf-logreg.yaml", "--folds", "2", "--rows", "60", "--out", str(semeval)]) == 0
    assert main(["ensemble", str(tmp_path / "cv"), str(semeval), "--out", str(tmp_path / "mixed")]) == 2
    assert "other label columns" in capsys.readouterr().err


@pytest.mark.slow
def test_a_generation_run_on_the_six_label_sample(tmp_path):
    run_dir, data = tmp_path / "run", first_rows(SIX, tmp_path / "six", 100, 24)  # 10 held out, 24 test rows
    overrides = ["train.max_steps=2", "train.batch_size=8", "generate.probabilities=true", "generate.num_samples=3"]
    assert main(["run", RECIPE, *overrides, "--data", str(data), "--out", str(run_dir)]) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["outputs"]["canonical_share"] == 1.0 and list(metrics["held_out"]["per_label"]) == list(NAMES)
    six = label_set(load_recipe(RECIPE))
    with (run_dir / "test_predictions.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        assert six.is_canonical(row["output"])
        assert [int(row[name]) for name in NAMES] == parse(row["output"], six).tolist() or metrics[
            "decision"
        ] != "greedy"
    assert set(json.loads((run_dir / "thresholds.json").read_text())) == set(NAMES)
    assert (run_dir / "submission.csv").read_text().splitlines()[0].split(",") == ["text_id", *NAMES]
