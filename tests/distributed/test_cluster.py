"""cv folds and predict shards on a real local Ray of 2 CPUs (``gen_emotion.distributed.cluster``, ``sharded_predict``):
folds trained side by side write what the sequential loop writes, a failed fold is named and the others kept; a file
predicted by two workers is byte for byte what one process writes (TF-IDF; MiniLM, whose batches the shards keep),
resumes from its saved shards, and loses nothing when a worker is killed mid-predict."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
from conftest import SAMPLE_DIR

from gen_emotion.cli.parser import main
from gen_emotion.data.formats import read_test
from gen_emotion.distributed.cluster import Threads
from gen_emotion.distributed.sharded_predict import predict_with_workers
from gen_emotion.models.hardware import compute_threads
from gen_emotion.scoring.prediction_files import write_table
from gen_emotion.serving.predict_file import predict_file

ray = pytest.importorskip("ray")

TEST_CSV = SAMPLE_DIR / "test.csv"
TIMING = {"seconds", "train_s", "predict_s", "peak_rss_mib", "peak_cuda_mib", "wall_s", "this_call_s", "finished"}
TIMING |= {"train_runtime_s", "train_runtime", "train_samples_per_second", "train_steps_per_second"}  # a trainer's
"""What differs between two runs of the same recipe: time, memory, when (``machine`` is the same machine)."""


def without_timing(value: object) -> object:
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def assert_same_cv_folder(expected: Path, found: Path) -> None:
    """The same files; CSVs and the recipe byte for byte, JSON but for its timings (and the folder's own path). The
    TF-IDF pickles are left out: pickling a fitted vectorizer is not byte-stable from one process to the next."""
    names = {p.relative_to(expected) for p in expected.rglob("*") if p.is_file() and p.name != "run.log"}
    assert names == {p.relative_to(found) for p in found.rglob("*") if p.is_file() and p.name != "run.log"}
    for name in sorted(names):
        if name.suffix in (".csv", ".yaml"):
            assert (expected / name).read_bytes() == (found / name).read_bytes(), name
        elif name.suffix == ".json":
            before, after = (json.loads((f / name).read_text().replace(str(f), "CV")) for f in (expected, found))
            assert without_timing(before) == without_timing(after), name


@pytest.fixture(scope="module")
def sequential(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TF-IDF cv folder of 3 folds trained one after another, in this process."""
    folder = tmp_path_factory.mktemp("sequential") / "cv"
    assert main(["cv", "tfidf-logreg", "--folds", "3", "--out", str(folder)]) == 0
    return folder


def test_folds_side_by_side_write_what_the_sequential_loop_writes(sequential, tmp_path):
    """The command starts its own local Ray and stops it (the first test of this file, before the shared one)."""
    assert not ray.is_initialized()
    parallel = tmp_path / "cv"
    assert main(["cv", "tfidf-logreg", "--folds", "3", "--parallel-folds", "2", "--out", str(parallel)]) == 0
    assert not ray.is_initialized()
    assert_same_cv_folder(sequential, parallel)  # fold.json's threads included
    log = (parallel / "run.log").read_text()
    assert "2 at a time" in log and all(f"fold {k}/3: training on 200 rows" in log for k in (1, 2, 3))
    # Ray's share of a fold is half the CPUs, fewer than this process computes with (on more than one core)
    threads = Threads.of_this_process(with_torch=False).count
    assert re.search(rf"each with \d+ CPUs?, computing with {threads} thread\(s\) as this process does", log), log
    assert json.loads((parallel / "folds" / "fold-0" / "fold.json").read_text())["threads"] == compute_threads()


@pytest.mark.slow
def test_minilm_folds_with_one_cpu_each_write_the_sequential_probabilities(tmp_path):
    """MiniLM's numbers depend on PyTorch's threads: each fold asks Ray for one of the 2 CPUs (Ray would start it
    with one thread) while this process trains with its own, and the folds still write the sequential loop's
    probabilities byte for byte."""
    import torch

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        small = ["train.max_steps=3", "train.batch_size=8", "classifier.max_length=48", "--folds", "2"]
        one_by_one, side_by_side = tmp_path / "sequential", tmp_path / "parallel"
        assert main(["cv", "minilm-l6-cpu", *small, "--out", str(one_by_one)]) == 0
        assert main(["cv", "minilm-l6-cpu", *small, "--parallel-folds", "2", "--out", str(side_by_side)]) == 0
    finally:
        ray.shutdown()
    assert_same_cv_folder(one_by_one, side_by_side)
    log = (side_by_side / "run.log").read_text()
    assert f"each with 1 CPU, computing with {torch.get_num_threads()} thread(s)" in log


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray of 2 CPUs for the tests below (each command uses it as it is and leaves it up)."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def test_a_failed_fold_is_named_the_others_are_kept_and_the_rerun_trains_it_alone(
    local_ray, sequential, tmp_path, capsys
):
    parallel = tmp_path / "cv"
    (parallel / "folds").mkdir(parents=True)
    (parallel / "folds" / "fold-1").write_text("not a folder")  # fold 1 cannot write its folder
    command = ["cv", "tfidf-logreg", "--folds", "3", "--parallel-folds", "2", "--out", str(parallel)]
    assert main(command) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # the log's lines, then the error's one line
    assert err.startswith("gen-emotion: error: fold-1 failed: ") and "the 2 other fold(s) are saved" in err, err
    kept = parallel / "folds" / "fold-0" / "val_probs.csv"
    assert kept.is_file() and (parallel / "folds" / "fold-2" / "fold.json").is_file()
    assert not (parallel / "oof_metrics.json").exists()
    os.utime(kept, (1, 1))
    (parallel / "folds" / "fold-1").unlink()
    assert main(command) == 0
    assert kept.stat().st_mtime == 1  # fold 0 was read back, not trained again
    assert_same_cv_folder(sequential, parallel)


def test_two_workers_write_what_one_process_writes_and_resume_from_their_shards(local_ray, sequential, tmp_path):
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    assert main(["predict", str(sequential), "--input", str(TEST_CSV), "--out", str(one)]) == 0
    assert main(["predict", str(sequential), "--input", str(TEST_CSV), "--out", str(two), "--workers", "2"]) == 0
    assert two.read_bytes() == one.read_bytes()
    assert (tmp_path / "two_probs.csv").read_bytes() == (tmp_path / "one_probs.csv").read_bytes()
    assert not (tmp_path / ".two.csv.shards").exists()  # the shards go once the files are written

    # interrupted after two shards: a second predict sends only the others, and writes the same files
    three = tmp_path / "three.csv"

    def interrupt(index: int, busy: list) -> None:
        saved.append(index)
        if len(saved) == 2:
            raise KeyboardInterrupt

    saved: list[int] = []
    with pytest.raises(KeyboardInterrupt):
        predict_with_workers(sequential, TEST_CSV, three, None, 2, on_shard=interrupt)
    assert not three.exists() and len(list((tmp_path / ".three.csv.shards").rglob("shard-*.json"))) == 2
    sent: list[int] = []
    result = predict_with_workers(sequential, TEST_CSV, three, None, 2, on_shard=lambda i, busy: sent.append(i))
    assert result["shards"] == 8 and sorted(sent + saved) == list(range(8))  # 80 rows: shards of 10
    assert three.read_bytes() == one.read_bytes()


@pytest.mark.slow
def test_a_classifier_keeps_its_batches_and_a_worker_killed_mid_predict_loses_nothing(local_ray, tmp_path):
    """MiniLM pads each batch to its longest row (in bf16), so a row's probabilities depend on its batch: the
    shards are whole batches of one call's (16 rows here), which a killed worker's restart predicts again. One
    process predicts with the one thread each worker has (Ray's share: 1 CPU), as the numbers depend on that too."""
    import torch

    run = tmp_path / "minilm"
    small = ["train.max_steps=2", "train.batch_size=8", "classifier.max_length=48", "classifier.predict_batch_size=16"]
    assert main(["run", "minilm-l6-cpu", *small, "--out", str(run)]) == 0
    test = read_test(TEST_CSV)
    rows = [(f"{copy}-{i}", text) for copy in range(6) for i, text in zip(test.ids, test.texts)]
    source = tmp_path / "many.csv"  # 480 rows: shards of four 16-row batches (about 480 / 2 workers / 4)
    write_table(source, ["ID", "Tweet"], rows)
    one = tmp_path / "one.csv"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        predict_file(run, source, one)
    finally:
        torch.set_num_threads(threads)

    killed: list = []
    saved: list[int] = []

    def kill_one(index: int, busy: list) -> None:
        saved.append(index)
        if not killed and busy:
            ray.kill(busy[0], no_restart=False)  # as if its process died, with a shard in hand
            killed.append(busy[0])

    two = tmp_path / "two.csv"
    result = predict_with_workers(run, source, two, None, 2, on_shard=kill_one)
    assert killed and ray.get(killed[0].ready.remote())[-1] not in result["pids"]  # started again
    ray.kill(killed[0])
    assert result["shards"] == 8 and sorted(saved) == list(
        range(8)
    )  # 7 shards of 64 rows and one of 32, each saved once
    assert two.read_bytes() == one.read_bytes()
    assert (tmp_path / "two_probs.csv").read_bytes() == (tmp_path / "one_probs.csv").read_bytes()


def test_the_flags_refuse_in_one_line(tmp_path, capsys, monkeypatch):
    def one_line(argv: list[str], match: str) -> None:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and match in err, err

    out = ["--out", str(tmp_path / "x")]
    one_line(
        ["cv", "tfidf-logreg", "--ray-address", "localhost:6379", *out], "--ray-address goes with --parallel-folds"
    )
    one_line(["cv", "tfidf-logreg", "--parallel-folds", "0", *out], "--parallel-folds must be at least 1")
    one_line(["predict", str(tmp_path), "--text", "hi", "--workers", "2"], "--workers goes with --input FILE")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    one_line(["cv", "tfidf-logreg", "--parallel-folds", "2", *out], 'pip install "gen-emotion[ray]"')
    assert not (tmp_path / "x").exists()
