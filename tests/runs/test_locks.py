"""One writer per folder (``gen_emotion.runs.locks``): a command on a folder or file that another live command writes is
refused in one line naming it, and nothing is written; a lock left by a killed process is taken over. Then the
fault harness for TF-IDF (#24): ``run``, ``cv``, ``ensemble``, ``predict`` and ``export-model`` killed (SIGKILL)
at seeded random moments while they write, then rerun, give what an uninterrupted command gives; a disk that
fills (a file-size limit on the child process) is one line, keeps what was written, and the rerun resumes."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import faults
import pytest
from conftest import SAMPLE_DIR

from gen_emotion.cli.parser import main
from gen_emotion.runs.locks import file_lock_path, lock_path

CLI = [sys.executable, "-m", "gen_emotion.cli.parser"]
HOLDER = """
import sys, time
from pathlib import Path
from gen_emotion.runs.locks import writing_file, writing_folder
lock = writing_folder if sys.argv[1] == "folder" else writing_file
with lock(Path(sys.argv[2])):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture(scope="module")
def cvs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("locks")
    made = [root / "cv1", root / "cv2"]
    assert main(["cv", "tfidf-logreg", "--folds", "2", "--out", str(made[0])]) == 0
    assert main(["cv", "tfidf-logreg", "classifier.logreg_c=2", "--folds", "2", "--out", str(made[1])]) == 0
    return made


def hold(kind: str, path: Path) -> subprocess.Popen:
    """Another process holding ``path``'s lock (as a command writing it would) until it is killed."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, kind, str(path)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


@pytest.mark.parametrize("command", ["run", "cv", "ensemble", "predict", "export-model"])
def test_a_second_writer_is_refused_naming_the_first_and_a_dead_ones_lock_is_taken_over(
    command, cvs, tmp_path, capsys, caplog
):
    out = tmp_path / ("out.csv" if command == "predict" else "out")
    args = {
        "run": ["run", "tfidf-logreg", "--out", str(out)],
        "cv": ["cv", "tfidf-logreg", "--folds", "2", "--out", str(out)],
        "ensemble": ["ensemble", *map(str, cvs), "--out", str(out)],
        "predict": ["predict", str(cvs[0]), "--input", str(SAMPLE_DIR / "test.csv"), "--out", str(out)],
        "export-model": ["export-model", str(cvs[0]), "--out", str(out)],
    }[command]
    folder_lock = command in ("run", "cv", "ensemble")
    holder = hold("folder" if folder_lock else "file", out)
    try:
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"another gen-emotion command is writing it (process {holder.pid} on " in err[0]
        assert not out.exists() or [p.name for p in out.iterdir()] == [lock_path(out).name]  # nothing written
    finally:
        holder.kill()
        holder.wait()
    # the holder died without letting go: its lock file is still there, and the next command takes it over
    assert (lock_path(out) if folder_lock else file_lock_path(out)).is_file()
    assert main(args) == 0
    assert f"taking over the lock of process {holder.pid} on " in caplog.text
    assert not (lock_path(out) if folder_lock else file_lock_path(out)).exists()  # let go once written


def finished_files(folder: Path) -> dict[str, object]:
    """What a finished TF-IDF folder holds, less what measures the time and the machine, and its own path."""
    found: dict[str, object] = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if not path.is_file() or path.name == "run.log" or path.suffix == ".pkl":
            continue  # a pickle's sets follow the string hash seed: its predictions and probabilities are compared
        if path.suffix == ".json":
            found[name] = strip_timings(json.loads(path.read_text().replace(str(folder), "FOLDER")))
        else:
            found[name] = path.read_bytes()
    return found


def strip_timings(value: object) -> object:
    if isinstance(value, dict):
        return {
            k: strip_timings(v)
            for k, v in value.items()
            if not (
                k.endswith("_s") or k in ("seconds", "peak_rss_mib", "peak_memory", "machine", "resumed", "finished")
            )
        }
    if isinstance(value, list):
        return [strip_timings(v) for v in value]
    return value


KILLS = 3  # kill points per command (seeded; 5 commands, each run 1 + 2 * KILLS times)


def command_line(command: str, cvs: list[Path], out: Path) -> list[str]:
    """The TF-IDF command, writing ``out``."""
    return [
        *CLI,
        *{
            "run": ["run", "tfidf-logreg"],
            "cv": ["cv", "tfidf-logreg", "--folds", "3"],
            "ensemble": ["ensemble", *map(str, cvs), "--stack"],
            "predict": ["predict", str(cvs[0]), "--input", str(SAMPLE_DIR / "test.csv")],
            "export-model": ["export-model", str(cvs[0])],
        }[command],
        "--out",
        str(out),
    ]


def written(command: str, out: Path) -> dict[str, object]:
    """What the command wrote, which must be all it left beside ``out`` (no lock, temporary or shard)."""
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")) == []
    if command == "predict":
        return {p.name: p.read_bytes() for p in (out, out.with_name(f"{out.stem}_probs.csv"))}
    assert not lock_path(out).exists()
    return finished_files(out)


@pytest.mark.parametrize("command", ["run", "cv", "ensemble", "predict", "export-model"])
def test_a_kill_at_a_random_moment_resumes_to_the_uninterrupted_result(command, cvs, tmp_path):
    """Kill points are drawn (seeded) from the time the uninterrupted command held its lock, i.e. wrote."""
    name = "out.csv" if command == "predict" else "out"
    lock = (lambda out: file_lock_path(out)) if command in ("predict", "export-model") else lock_path
    reference = tmp_path / "reference" / name
    locked, unlocked = faults.timed(command_line(command, cvs, reference), lock(reference).is_file)
    expected = written(command, reference)
    rng = random.Random(f"{command}-20261206")
    states = []
    for k in range(KILLS):
        out = tmp_path / f"killed-{k}" / name
        faults.kill_after(command_line(command, cvs, out), rng.uniform(locked, unlocked))
        states.append(
            sorted(str(p.relative_to(out.parent)) for p in out.parent.rglob("*")) if out.parent.is_dir() else []
        )
        rerun = subprocess.run(command_line(command, cvs, out), capture_output=True, text=True)
        if command == "export-model" and f"{name}/gen_emotion.json" in states[-1]:
            assert "the folder is not empty" in rerun.stderr  # killed once the export was in place: it is whole
        else:
            assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert written(command, out) == expected, f"kill point {k}: {states[-1]} when killed"
    print(f"{command}: when killed, {[len(state) for state in states]} files")


@pytest.mark.parametrize("command", ["run", "cv"])
def test_a_full_disk_is_one_line_keeps_what_was_written_and_the_rerun_resumes(command, cvs, tmp_path):
    """The model file cannot be written (the child's files may not pass 64 KiB): one line, the folder keeps its
    whole files and no partial one, and the rerun with room finishes as an uninterrupted run does."""
    reference, out = tmp_path / "reference", tmp_path / "out"
    subprocess.run(command_line(command, cvs, reference), check=True, capture_output=True)
    full = subprocess.run(
        command_line(command, cvs, out),
        capture_output=True,
        text=True,
        preexec_fn=lambda: faults.limit_file_size(1 << 16),
    )
    assert full.returncode == 2 and "Traceback" not in full.stderr
    assert "tfidf_logreg.pkl: cannot write (File too large)" in full.stderr.strip().splitlines()[-1]
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert "recipe.yaml" in left and not any(name.endswith((".tmp", ".pkl")) for name in left), left
    for name in left:
        if name.endswith(".json") or name == "recipe.yaml":
            assert (out / name).read_text().strip()  # whole files, nothing cut short
    rerun = subprocess.run(command_line(command, cvs, out), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert written(command, out) == written(command, reference)
