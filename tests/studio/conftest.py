"""The studio's browser tests share real TF-IDF run, cv and ensemble folders made once with the real CLI, one
studio over them (``studio_harness.Studio``), and headless Chromium driven by Playwright (Debian's ``chromium``,
which ``setup.sh`` installs; never a downloaded browser build)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .studio_harness import CHROMIUM, REPO, Page, Studio, cli, sample_with_markup


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RUNS_DIR: a TF-IDF run, two TF-IDF cvs (one nested), their ensemble, and a damaged folder."""
    base = tmp_path_factory.mktemp("studio")
    data = sample_with_markup(base / "data")
    runs = base / "runs"
    recipe = str(REPO / "recipes" / "tfidf-logreg.yaml")
    cli("run", recipe, "--data", str(data), "--out", str(runs / "tfidf-run"))
    cli("cv", recipe, "--data", str(data), "--folds", "3", "--out", str(runs / "cv-a"))
    cli(
        "cv",
        recipe,
        "--data",
        str(data),
        "--folds",
        "3",
        "--out",
        str(runs / "group" / "cv-b"),
        "classifier.logreg_c=0.25",
        "classifier.char_ngrams=false",
    )
    cli("ensemble", "cv-a", "group/cv-b", "--out", "ens", cwd=runs)
    (runs / "damaged").mkdir()
    shutil.copy(runs / "tfidf-run" / "recipe.yaml", runs / "damaged" / "recipe.yaml")
    (runs / "damaged" / "metrics.json").write_text('{"held_out": ', encoding="utf-8")
    return runs


@pytest.fixture(scope="session")
def studio(runs_dir: Path) -> Iterator[Studio]:
    server = Studio(runs_dir, "--allow-launch")
    yield server
    err = server.stop()
    assert "Traceback" not in err, err[-3000:]


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (setup.sh installs Debian's chromium)")
    with playwright_api.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def tab(browser: object, tmp_path: Path) -> Iterator[Page]:
    page = Page(browser, tmp_path / "screenshots")
    yield page
    page.context.close()
