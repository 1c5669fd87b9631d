"""Data as users hold it (``sources``): a ``DatasetDict`` with ``ClassLabel`` lists saved with ``save_to_disk``, a
dataset that ``datasets.load_dataset`` reads with a config (a folder laid out as the hub keeps GoEmotions, since the
hub is not reachable from tests), JSON Lines of label-name lists without IDs; given splits used as given, through
``run``, ``cv``, ``predict``, ``ensemble`` and (slow) the generation and classifier paths."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, SAMPLE_DIR

from gen_emotion.cli.parser import main
from gen_emotion.config.recipes import data_source, label_set, load_recipe, with_header_labels
from gen_emotion.config.task_kinds import task_kind
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.labels import LABELS
from gen_emotion.data.formats import read_label_file, read_train
from gen_emotion.data.sources import DataSource, read_splits
from gen_emotion.generation.prompts import build_messages, load_templates
from gen_emotion.runs.steps import Fold
from gen_emotion.tasks.base import get_task

RECIPE = "recipes/goemotions-tfidf.yaml"
NAMES = ("admiration", "anger", "fear", "joy", "sadness", "neutral")
PHRASES = ("what amazing work", "this makes me so angry", "scared of the dark", "so happy today", "sad and alone")
SIZES = {"train": 48, "validation": 12, "test": 12}
HUB_README = (
    "---\nconfigs:\n- config_name: simplified\n  data_files:\n"
    + "".join(f"  - split: {split}\n    path: simplified/{split}-*\n" for split in SIZES)
    + "---\n"
)


def rows(split: str, n: int, seed: int) -> dict[str, list]:
    """GoEmotions-shaped rows: ``text``, ``labels`` (class ids; 5 is neutral), ``id``."""
    rng = np.random.default_rng(seed)
    found: dict[str, list] = {"text": [], "labels": [], "id": []}
    for i in range(n):
        chosen = sorted(rng.choice(5, size=int(rng.integers(1, 3)), replace=False).tolist()) if i % 6 else [5]
        words = " and ".join(PHRASES[k] for k in chosen) if chosen != [5] else "the bus leaves at noon"
        found["text"].append(f"{words} #{i}")
        found["labels"].append(chosen)
        found["id"].append(f"{split[:2]}{i:03d}")
    return found


def goemotions(sizes: dict[str, int] = SIZES) -> object:
    """A ``DatasetDict`` with GoEmotions' features: ``labels`` a sequence of ``ClassLabel`` ids."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

    features = Features({"text": Value("string"), "labels": Sequence(ClassLabel(names=NAMES)), "id": Value("string")})
    return DatasetDict(
        {
            split: Dataset.from_dict(rows(split, n, seed), features=features)
            for seed, (split, n) in enumerate(sizes.items())
        }
    )


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    folder = tmp_path / "goemotions"
    goemotions().save_to_disk(str(folder))
    return folder


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_a_saved_datasetdict_runs_with_its_validation_split_held_out_and_predicts(saved, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", RECIPE, "--data", str(saved), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["held_out"]["split"] == "validation" and metrics["held_out"]["rows"] == 12
    assert list(metrics["held_out"]["per_label"]) == list(NAMES)  # the ClassLabel names, in their order
    assert [row[0] for row in read_csv(out / "val_predictions.csv")[1:]] == rows("validation", 12, 1)["id"]
    submission = read_csv(out / "submission.csv")
    assert submission[0] == ["id", *NAMES] and [row[0] for row in submission[1:]] == rows("test", 12, 2)["id"]
    record = json.loads((out / "data.json").read_text())
    assert record["source"] == {
        "data": str(saved),
        "kind": "datasets folder",
        "config": None,
        "splits": {"train": "train", "validation": "validation", "test": "test"},
        "ids": "id",
    }
    assert len(record["validation"]["sha256"]) == 64
    assert "12 held out as given (the validation split, no fold cut)" in (out / "run.log").read_text()
    # predict a split folder with the finished run: the run's own test predictions
    assert main(["predict", str(out), "--input", str(saved / "test"), "--out", str(tmp_path / "pred.csv")]) == 0
    assert read_csv(tmp_path / "pred.csv") == read_csv(out / "test_predictions.csv")
    assert main(["export-model", str(out), "--out", str(tmp_path / "model")]) == 0
    assert (
        "The data's validation split (12 rows), never seen in training"
        in (tmp_path / "model" / "README.md").read_text()
    )
    # a resume on changed data is refused, naming the split
    changed = goemotions({"train": 48, "validation": 11, "test": 12})
    changed.save_to_disk(str(tmp_path / "other"))
    capsys.readouterr()
    assert main(["run", RECIPE, "--data", str(tmp_path / "other"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "was started on other data (validation changed since: validation was" in err


def test_cv_folds_the_training_split_and_ensembles_combine_the_folders(saved, tmp_path, capsys):
    for name, extra in (("cv", []), ("cv2", ["classifier.char_ngrams=false"])):
        assert main(["cv", RECIPE, *extra, "--data", str(saved), "--folds", "2", "--out", str(tmp_path / name)]) == 0
    metrics = json.loads((tmp_path / "cv" / "oof_metrics.json").read_text())
    assert metrics["rows"] == 48 and metrics["test_rows"] == 12
    assert "the validation split (12 rows) is not used" in (tmp_path / "cv" / "run.log").read_text()
    assert set(json.loads((tmp_path / "cv" / "data.json").read_text())) == {"train", "test", "source"}
    ensemble = tmp_path / "ensemble"
    assert main(["ensemble", str(tmp_path / "cv"), str(tmp_path / "cv2"), "--out", str(ensemble)]) == 0
    submission = read_csv(ensemble / "submission.csv")
    assert submission[0] == ["id", *NAMES] and len(submission) == 13
    (tmp_path / "texts.jsonl").write_text('{"id": "q1", "text": "so happy today"}\n', encoding="utf-8")
    assert (
        main(["predict", str(ensemble), "--input", str(tmp_path / "texts.jsonl"), "--out", str(tmp_path / "p.csv")])
        == 0
    )
    assert read_csv(tmp_path / "p.csv")[0] == ["ID", *NAMES]


def name_lists(folder: Path, splits: dict[str, int]) -> Path:
    """JSON Lines of ``text`` and ``emotions`` (label names), no ID column."""
    folder.mkdir()
    for seed, (split, n) in enumerate(splits.items()):
        found = rows(split, n, seed)
        lines = [
            {"text": text, "emotions": [NAMES[k] for k in ids if k != 5]}
            for text, ids in zip(found["text"], found["labels"])
        ]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return folder


NAME_LISTS = ["data.label_column=emotions", "data.id_column=null", "data.dataset_config=null"]


def test_json_lines_of_name_lists_without_ids_number_the_rows(tmp_path, capsys):
    folder = name_lists(tmp_path / "lists", {"train": 48, "test": 12})
    val = name_lists(tmp_path / "val", {"validation": 12}) / "validation.jsonl"
    out = tmp_path / "run"
    assert main(["run", RECIPE, *NAME_LISTS, "--data", str(folder), "--val", str(val), "--out", str(out)]) == 0
    assert "IDs are row numbers, from 0" in capsys.readouterr().out
    submission = read_csv(out / "submission.csv")
    # the names the lists hold, sorted; an empty list is the none label (neutral)
    assert submission[0] == ["row", "admiration", "anger", "fear", "joy", "sadness", "neutral"]
    assert [row[0] for row in submission[1:]] == [str(i) for i in range(12)]
    assert [row[0] for row in read_csv(out / "val_predictions.csv")[1:]] == [str(i) for i in range(12)]
    assert "no ID column (data.id_column: null): IDs are row numbers" in (out / "run.log").read_text()
    record = json.loads((out / "data.json").read_text())
    assert record["source"]["ids"] == "row numbers" and record["source"]["splits"]["validation"] == str(val)
    # the same file beside train.jsonl is the validation split too, and with --val as well it is refused
    (folder / "validation.jsonl").write_bytes(val.read_bytes())
    assert main(["run", RECIPE, *NAME_LISTS, "--data", str(folder), "--out", str(tmp_path / "beside")]) == 0
    assert read_csv(tmp_path / "beside" / "submission.csv") == submission
    assert (
        main(["run", RECIPE, *NAME_LISTS, "--data", str(folder), "--val", str(val), "--out", str(tmp_path / "x")]) == 2
    )
    assert "holds validation.jsonl too; keep one validation file" in capsys.readouterr().err


def hub_layout(folder: Path) -> Path:
    """GoEmotions as its hub repository keeps it: ``simplified/SPLIT-*.parquet`` and a README naming the config."""
    (folder / "simplified").mkdir(parents=True)
    for split, part in goemotions().items():
        part.to_parquet(str(folder / "simplified" / f"{split}-00000-of-00001.parquet"))
    (folder / "README.md").write_text(HUB_README, encoding="utf-8")
    return folder


def test_load_dataset_reads_a_dataset_with_its_config_and_a_change_is_refused(tmp_path, monkeypatch, capsys):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    folder = hub_layout(tmp_path / "go_emotions")
    out = tmp_path / "run"
    assert main(["run", RECIPE, "--data", str(folder), "--out", str(out)]) == 0
    record = json.loads((out / "data.json").read_text())
    assert record["source"]["kind"] == "load_dataset" and record["source"]["config"] == "simplified"
    assert record["train"]["rows"] == 48 and record["train"]["fingerprint"] and len(record["train"]["sha256"]) == 64
    assert read_csv(out / "submission.csv")[0] == ["id", *NAMES]
    assert main(["run", RECIPE, "--data", str(folder), "--out", str(out)]) == 0  # the same data: resumes
    goemotions({"train": 47, "validation": 12, "test": 12})["train"].to_parquet(
        str(folder / "simplified" / "train-00000-of-00001.parquet")
    )
    capsys.readouterr()
    assert main(["run", RECIPE, "--data", str(folder), "--out", str(out)]) == 2
    assert "train changed since: the train split was 48 rows, sha256" in capsys.readouterr().err
    assert main(["run", RECIPE, "data.dataset_config=raw", "--data", str(folder), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert (
        "\n" not in err.strip()
        and "(data.dataset_config raw): datasets.load_dataset failed (BuilderConfig 'raw'" in err
    )


def test_an_unknown_dataset_offline_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    import datasets
    import huggingface_hub.constants as hub

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # as HF_DATASETS_OFFLINE=1 sets them
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    assert main(["run", RECIPE, "--data", "nobody/no-such-dataset", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "gen-emotion: error: --data nobody/no-such-dataset (data.dataset_config simplified): not in the datasets "
        "cache, and the hub cannot be reached (offline mode: HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set); load it "
        "once online, or check the id (or the path, for a local folder)"
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda p: goemotions({"train": 8, "validation": 4}).save_to_disk(str(p)),
            "no test split (it has train, validation)",
        ),
        (lambda p: goemotions({"train": 8})["train"].save_to_disk(str(p)), "a datasets folder of one split"),
        (lambda p: p.write_text("ID,Tweet\n"), "not a folder (give the folder"),
        (lambda p: None, "nor a dataset id"),
        (lambda p: p.mkdir(), "no train file in this folder (train.csv, .tsv, .jsonl, .parquet or a datasets folder)"),
    ],
)
def test_a_source_that_cannot_be_read_is_one_line(tmp_path, make, message):
    path = tmp_path / "data dir"
    make(path)
    with pytest.raises(GenEmotionError) as err:
        read_splits(data_source(load_recipe(RECIPE), path))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_folder_of_files_reads_its_splits_cut_to_rows():
    full = read_splits(DataSource(str(SAMPLE_DIR)))
    assert len(full.train) == 300 and len(full.test) == 80 and full.validation is None and full.kind == "files"
    assert full.test.labels is None and full.record(("train", "test"))["source"]["splits"] == {
        "train": "train.csv",
        "test": "test.csv",
    }
    cut = read_splits(DataSource(str(SAMPLE_DIR), rows=5))
    assert cut.train.ids == full.train.ids[:5] and cut.test.ids == full.test.ids[:5]
    with pytest.raises(GenEmotionError, match="--rows must be at least 2, got 1"):
        read_splits(DataSource(str(SAMPLE_DIR), rows=1))


def test_a_run_folder_from_before_the_source_was_recorded_still_resumes(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "tfidf-logreg", "--out", str(out)]) == 0
    record = json.loads((out / "data.json").read_text())
    (out / "data.json").write_text(json.dumps({key: record[key] for key in ("train", "test")}))
    assert main(["run", "tfidf-logreg", "--out", str(out)]) == 0


@pytest.mark.slow
def test_a_generation_run_on_a_saved_datasetdict(tmp_path):
    """The generation task's steps run in processes of their own, each rebuilding the rows from ``--data`` and
    the held-out validation split as given."""
    goemotions({"train": 16, "validation": 4, "test": 4}).save_to_disk(str(tmp_path / "ge"))
    data = ["data.label_column=labels", "data.labels=from_data", "data.none_label=neutral", "data.id_column=id"]
    fast = ["data.text_column=text", "data.eval_rows=0", "train.max_steps=2", "train.batch_size=8"]
    fast += ["generate.backend=transformers", "generate.probabilities=false"]
    out = tmp_path / "run"
    assert main(["run", "smollm2-135m-cpu", *data, *fast, "--data", str(tmp_path / "ge"), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["held_out"]["split"] == "validation" and metrics["held_out"]["rows"] == 4
    assert metrics["outputs"]["canonical_share"] == 1.0
    assert [row[0] for row in read_csv(out / "submission.csv")[1:]] == rows("test", 4, 2)["id"]


@pytest.mark.slow
def test_a_classifier_run_on_name_lists_without_ids(tmp_path, tiny_bert):
    folder = name_lists(tmp_path / "lists", {"train": 24, "validation": 6, "test": 6})
    model = [
        f"model.name={tiny_bert}",
        "task=classify",
        "train.epochs=1",
        "data.eval_rows=0",
        "classifier.max_length=16",
    ]
    out = tmp_path / "run"
    assert main(["run", RECIPE, *NAME_LISTS, *model, "--data", str(folder), "--out", str(out)]) == 0
    assert [row[0] for row in read_csv(out / "submission.csv")] == ["row", *map(str, range(6))]
    assert json.loads((out / "metrics.json").read_text())["held_out"]["rows"] == 6


SEMEVAL_ID = "SemEvalWorkshop/sem_eval_2018_task_1"
SEMEVAL_SIZES = {"train": 120, "validation": 40, "test": 40}
OTHER_CONFIG = ("subtask5.spanish", {"train": 4, "validation": 2, "test": 2})
OTHER_DATA = {
    "goemotions-tfidf": r"\(data.dataset_config simplified\): .*BuilderConfig 'simplified' not found",
    "own-labels-example": r"train split: its columns: missing column 'text_id'",
}
"""The shipped recipes written for other data: GoEmotions (its config) and the six-label sample (its columns)."""


def semeval_hub(root: Path) -> Path:
    """SemEval-2018 Task 1 as its hub repository keeps it, at the id's path under ``root``: ``CONFIG/SPLIT-*.parquet``
    of ``ID``, ``Tweet`` and the 11 labels as booleans (rows of the shipped sample), and a README naming two configs,
    so that ``load_dataset`` needs the config named."""
    from datasets import Dataset, Features, Value

    sample = read_train(SAMPLE_DIR / "train.csv")
    features = Features({"ID": Value("string"), "Tweet": Value("string"), **{n: Value("bool") for n in LABELS}})
    folder, start, readme = root / SEMEVAL_ID, 0, "---\nconfigs:\n"
    for config, sizes in (("subtask5.english", SEMEVAL_SIZES), OTHER_CONFIG):
        (folder / config).mkdir(parents=True)
        readme += f"- config_name: {config}\n  data_files:\n"
        for split, n in sizes.items():
            at = range(start, start + n)
            columns = {"ID": [f"2018-En-{i:05d}" for i in at], "Tweet": [sample.texts[i] for i in at]}
            columns |= {name: [bool(sample.labels[i, j]) for i in at] for j, name in enumerate(LABELS)}
            path = folder / config / f"{split}-00000-of-00001.parquet"
            Dataset.from_dict(columns, features=features).to_parquet(str(path))
            readme += f"  - split: {split}\n    path: {config}/{split}-*\n"
            start += n
    (folder / "README.md").write_text(readme + "---\n", encoding="utf-8")
    return folder


@pytest.fixture
def semeval(tmp_path, monkeypatch) -> Path:
    """The hub copy, read offline (as ``HF_DATASETS_OFFLINE=1`` sets it) by its id: from the folder holding it."""
    import datasets
    import huggingface_hub.constants as hub

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    return semeval_hub(tmp_path)


def gold(folder: Path, split: str) -> tuple[list[str], np.ndarray]:
    """A split's IDs and labels as the parquet file holds them (booleans)."""
    import pyarrow.parquet as pq

    table = pq.read_table(folder / "subtask5.english" / f"{split}-00000-of-00001.parquet").to_pydict()
    return table["ID"], np.array([table[name] for name in LABELS], dtype=np.int64).T


def test_the_semeval_hub_id_runs_with_its_config_its_validation_split_and_scores_the_test_split(semeval, capsys):
    from sklearn.metrics import f1_score

    out = Path("run")
    assert main(["run", "tfidf-logreg", "--data", SEMEVAL_ID, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["held_out"]["split"] == "validation" and metrics["held_out"]["rows"] == 40
    ids, labels = gold(semeval, "test")
    submission = read_label_file(out / "submission.csv")
    assert submission.ids == ids and metrics["test"]["rows"] == 40
    assert metrics["test"]["macro_f1"] == pytest.approx(f1_score(labels, submission.labels, average="macro"))
    shown = f"test split (gold labels, as submitted): macro-F1 {metrics['test']['macro_f1']:.4f}"
    assert shown in capsys.readouterr().out
    source = json.loads((out / "data.json").read_text())["source"]
    assert source["kind"] == "load_dataset" and source["config"] == "subtask5.english"
    assert source["splits"] == {"train": "train", "validation": "validation", "test": "test"}
    assert f"40 test rows from {SEMEVAL_ID} (subtask5.english)" in (out / "run.log").read_text()
    assert main(["cv", "tfidf-logreg", "--data", SEMEVAL_ID, "--folds", "3", "--out", "cv"]) == 0
    cv = json.loads(Path("cv/oof_metrics.json").read_text())
    assert cv["rows"] == 120 and cv["test"]["rows"] == 40  # cv folds the train split; the test split is scored
    # the id gets its config; the folder by another name, or the other config, is what data.dataset_config says
    assert len(read_splits(DataSource(SEMEVAL_ID, config=OTHER_CONFIG[0])).train) == 4
    with pytest.raises(GenEmotionError, match="name one with data.dataset_config=NAME$"):
        read_splits(DataSource(str(semeval.resolve())))


def test_every_shipped_recipe_reads_the_semeval_hub_id(semeval):
    """Every recipe written for SemEval's columns gets its splits, the validation split held out, the labels and (a
    generation recipe) its prompt from the hub id; those written for other data say in one line why not."""
    read: dict[object, object] = {}
    checked = []
    for path in sorted((REPO_ROOT / "recipes").glob("*.yaml")):
        recipe = load_recipe(path)
        source = data_source(recipe, SEMEVAL_ID)
        if path.stem in OTHER_DATA:  # written for other data: one line says why not
            with pytest.raises(GenEmotionError, match=OTHER_DATA[path.stem]):
                read_splits(source)
            continue
        checked.append(path.stem)
        if source.columns not in read:
            read[source.columns] = read_splits(source)
        splits = read[source.columns]
        recipe = with_header_labels(recipe, splits.train.label_names)
        fold = Fold.load(source, recipe.data.folds, recipe.data.fold, recipe.data.seed, data=splits, given=True)
        assert label_set(recipe).names == LABELS and len(fold.train) == 120 and len(fold.held_out) == 40, path.name
        assert fold.test.labels.shape == (40, 11), path.name
        get_task(recipe.task)
        if task_kind(recipe.task).generates_text:
            templates = load_templates(recipe.prompt.template, label_set(recipe))
            assert fold.train.texts[0] in build_messages(fold.train.texts[0], templates)[-1]["content"], path.name
    assert len(checked) == len(list((REPO_ROOT / "recipes").glob("*.yaml"))) - len(OTHER_DATA)
