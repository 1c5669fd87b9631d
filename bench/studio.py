"""The studio's speed: the runs page over 200 folders, the errors page over a 3,259-row held-out file (the Kaggle
test file's size), and that opening a run's pages loads no model.

    python bench/studio.py                      # temporary folders, removed after
    python bench/studio.py --folders 200 --rows 3259 --repeats 5

What it makes (with the real CLI, on data made from the shipped sample, so no download): a TF-IDF run, two 3-fold
TF-IDF cvs and their ensemble, copied until there are ``--folders`` folders; and a TF-IDF run whose
validation split holds ``--rows`` rows (texts of the sample, joined in pairs and numbered, so each is new), whose
``val_predictions.csv`` the errors page pages through. Each page is requested from the studio's app in this
process (Starlette's test client: the app's own time, no network), ``--repeats`` times after a first cold request:
the median, the 95th percentile (the goals' figure) and the slowest. Goals (issue #33): the runs page under 1 s,
an errors page under 300 ms, no model loaded by showing pages. Prints a table and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gen_emotion.data.dataset import sample_data_dir  # noqa: E402

RECIPE = str(REPO / "recipes" / "tfidf-logreg.yaml")


def cli(*args: str, cwd: Path | None = None) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "gen_emotion", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"gen-emotion {' '.join(args)} failed: {done.stderr[-1000:]}")


def big_data(folder: Path, rows: int) -> Path:
    """A data folder whose validation file has ``rows`` rows (and train twice that), from the sample's texts."""
    with (sample_data_dir() / "train.csv").open(encoding="utf-8", newline="") as handle:
        sample = list(csv.reader(handle))
    header, body = sample[0], sample[1:]
    folder.mkdir(parents=True)

    def write(name: str, count: int, offset: int) -> None:
        with (folder / name).open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for i in range(count):
                a, b = body[(i + offset) % len(body)], body[(7 * i + 3 + offset) % len(body)]
                writer.writerow([f"row-{offset + i}", f"{a[1]} {b[1]} #{i}", *a[2:]])

    write("train.csv", 2 * rows, 0)
    write("validation.csv", rows, 2 * rows)
    shutil.copy(sample_data_dir() / "test.csv", folder / "test.csv")
    return folder


def many_folders(runs: Path, count: int) -> None:
    """``count`` folders: copies of a TF-IDF run, a cv and an ensemble."""
    seed = runs.parent / "seed"
    cli("run", RECIPE, "--out", str(seed / "run"))
    cli("cv", RECIPE, "--folds", "3", "--out", str(seed / "cv"))
    cli("cv", RECIPE, "--folds", "3", "--out", str(seed / "cv2"), "classifier.logreg_c=1.0")
    cli("ensemble", "cv", "cv2", "--out", "ens", cwd=seed)
    kinds = ["run", "cv", "ens"]
    for i in range(count):
        shutil.copytree(seed / kinds[i % 3], runs / f"group-{i // 50}" / f"{kinds[i % 3]}-{i:03d}")


def timed(client, url: str, repeats: int) -> dict:
    started = time.perf_counter()
    first = client.get(url)
    cold = time.perf_counter() - started
    if first.status_code != 200:
        raise SystemExit(f"{url}: {first.status_code} {first.text[:300]}")
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        assert client.get(url).status_code == 200
        times.append(time.perf_counter() - started)
    times.sort()
    p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
    return {
        "cold_ms": round(cold * 1000, 1),
        "median_ms": round(statistics.median(times) * 1000, 1),
        "p95_ms": round(p95 * 1000, 1),
        "max_ms": round(max(times) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folders", type=int, default=200)
    parser.add_argument("--rows", type=int, default=3259)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    from fastapi.testclient import TestClient

    from gen_emotion.studio.app import Studio, StudioOptions, build_app

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        runs = base / "runs"
        many_folders(runs, args.folders)
        data = big_data(base / "data", args.rows)
        cli("run", RECIPE, "--data", str(data), "--out", str(runs / "big"))
        studio = Studio(runs, StudioOptions())
        client = TestClient(build_app(studio))
        figures: dict = {"folders": args.folders + 1, "rows": args.rows}
        figures["runs_page"] = timed(client, "/", args.repeats)
        pages = {
            "errors_page_1": "/errors/big",
            "errors_page_40": "/errors/big?page=40",
            "errors_fn_joy_by_confidence": "/errors/big?label=joy&kind=fn&sort=confidence&page=2",
            "errors_search": "/errors/big?q=happy&per=100",
        }
        for name, url in pages.items():
            figures[name] = timed(client, url, args.repeats)
        for url in ("/run/big", "/run/group-0/cv-001", "/run/group-0/ens-002", "/errors/group-0/cv-001"):
            assert client.get(url).status_code == 200
        figures["models_loaded_by_pages"] = studio.models.loads
        answer = client.post("/api/try/big", json={"texts": ["What a day!"]})
        figures["models_loaded_after_try_it"] = studio.models.loads if answer.status_code == 200 else None
        studio.models.close()
    rows = [(name, value) for name, value in figures.items() if isinstance(value, dict)]
    print(f"{'page':32s} {'cold ms':>9s} {'median ms':>10s} {'p95 ms':>8s} {'max ms':>8s}")
    for name, value in rows:
        times = (value[key] for key in ("cold_ms", "median_ms", "p95_ms", "max_ms"))
        print(f"{name:32s} " + " ".join(f"{t:9.1f}" for t in times))
    print(
        f"models loaded by showing pages: {figures['models_loaded_by_pages']}; "
        f"after one try-it request: {figures['models_loaded_after_try_it']}"
    )
    figures["goals_met"] = {
        "runs_page_under_1s": figures["runs_page"]["p95_ms"] < 1000,
        "errors_pages_under_300ms": all(figures[n]["p95_ms"] < 300 for n in pages),
        "no_model_loaded_by_pages": figures["models_loaded_by_pages"] == 0,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
