"""Launch from the browser (``studio --allow-launch``): a TF-IDF run started from the form appears, finishes and
is listed; a running job's stop button ends its process group; a folder being written takes no second job; the
jobs are files, so they outlive the page."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .studio_harness import wait_for


def _launch(tab, url: str, recipe: str, out: str, data: Path, overrides: str = "") -> str:
    tab.open(url + "/launch")
    tab.page.fill("input[name=recipe]", recipe)
    tab.page.fill("input[name=out]", out)
    tab.page.fill("input[name=data]", str(data))
    tab.page.fill("textarea[name=overrides]", overrides)
    tab.page.click("#launch-button")
    tab.page.wait_for_load_state("networkidle")
    return tab.page.url


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_launched_tfidf_run_finishes_and_is_listed(studio, runs_dir, tab):
    url = _launch(tab, studio.url, "tfidf-logreg", "launched/tfidf", runs_dir.parent / "data")
    assert "/job/" in url
    wait_for(lambda: tab.page.inner_text("#job-state") in ("finished", "failed"), 120, "the job to end")
    assert tab.page.inner_text("#job-state") == "finished", tab.page.inner_text("#job-log")
    assert "held-out macro-F1" in tab.page.inner_text("#job-log")
    tab.shot("job")
    tab.page.reload()  # the job is a file: the page after a reload says the same
    wait_for(lambda: tab.page.inner_text("#job-state") == "finished", 10, "the state after a reload")
    tab.open(studio.url + "/")
    row = tab.page.locator('tr[data-path="launched/tfidf"]')
    metrics = json.loads((runs_dir / "launched" / "tfidf" / "metrics.json").read_text())
    assert row.locator("td.macro").inner_text() == f"{metrics['held_out_final_macro_f1']:.4f}"
    assert row.locator(".state").inner_text() == "finished"
    tab.no_errors()


def test_stop_ends_the_job_and_a_busy_folder_takes_no_second_job(studio, runs_dir, tab):
    data = runs_dir.parent / "data"
    url = _launch(tab, studio.url, "minilm-l6-cpu", "launched/minilm", data, "train.max_steps=500")
    job_id = url.rsplit("/", 1)[1]
    job = json.loads((runs_dir / ".studio" / "jobs" / f"{job_id}.json").read_text())
    wait_for(lambda: (runs_dir / "launched" / "minilm" / ".gen-emotion.lock").is_file(), 60, "the run to start")
    tab.open(studio.url + "/?q=minilm")  # its lock is held by a live process
    assert tab.page.locator('tr[data-path="launched/minilm"] .state').inner_text() == "running"
    second = _launch(tab, studio.url, "tfidf-logreg", "launched/minilm", data)
    assert second.endswith("/launch") and "already writing" in tab.page.inner_text("#problem")
    tab.open(url)
    assert tab.page.inner_text("#job-state") == "running"
    tab.page.click("#stop")
    wait_for(lambda: tab.page.inner_text("#job-state") == "stopped", 30, "the job to stop")
    wait_for(lambda: not _alive(job["pid"]), 15, "its process to end")
    tab.open(studio.url + "/?q=minilm")
    assert tab.page.locator('tr[data-path="launched/minilm"] .state').inner_text() == "failed"
    tab.no_errors(expected=("400 (Bad Request)",))  # the refused second launch's page
