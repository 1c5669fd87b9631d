"""The studio's pages in a real browser (headless Chromium) over real TF-IDF run, cv and ensemble folders: each
page loads without a console error, shows what the folders' files hold, and its filters do what they say."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from gen_emotion.scoring.metrics import paired_bootstrap

FOLDERS = ("tfidf-run", "cv-a", "group/cv-b", "ens")


def headline(runs: Path, folder: str) -> float:
    """The figure the runs page must show, read straight from the folder's metrics file."""
    if (runs / folder / "metrics.json").is_file():
        return json.loads((runs / folder / "metrics.json").read_text())["held_out_final_macro_f1"]
    return json.loads((runs / folder / "oof_metrics.json").read_text())["macro_f1"]


def table(path: Path) -> tuple[list[str], np.ndarray, list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    return [r[0] for r in rows[1:]], np.array([[int(v) for v in r[1:]] for r in rows[1:]]), rows[0][1:]


def test_runs_page_shows_each_folder_as_its_metrics_say(studio, runs_dir, tab):
    tab.open(studio.url + "/")
    for folder in FOLDERS:
        row = tab.page.locator(f'tr[data-path="{folder}"]')
        assert row.locator("td.macro").inner_text() == f"{headline(runs_dir, folder):.4f}", folder
        assert row.locator(".state").inner_text() == "finished"
    damaged = tab.page.locator('tr[data-path="damaged"]')
    assert damaged.locator(".state").inner_text() == "unreadable"
    assert "metrics.json" in damaged.locator(".note").inner_text()
    tab.shot("runs")
    tab.page.click("text=macro-F1")  # sorted by macro-F1, highest first
    shown = [float(t) for t in tab.page.locator("td.macro").all_inner_texts() if t]
    assert shown == sorted(shown, reverse=True) and len(shown) >= len(FOLDERS)
    tab.page.select_option("select[name=kind]", "cv")
    tab.page.click("text=Filter")
    assert sorted(tab.page.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.path)")) == [
        "cv-a",
        "group/cv-b",
    ]
    tab.no_errors()


def test_run_pages_show_figures_chart_folds_and_members(studio, runs_dir, tab):
    for folder in FOLDERS:
        tab.open(f"{studio.url}/run/{folder}")
        tab.page.wait_for_selector("#chart-f1 svg")
        assert "task: tfidf" in tab.page.inner_text("body") or folder == "ens"
        tab.shot("run-" + folder.replace("/", "-"))
    tab.open(f"{studio.url}/run/cv-a")
    assert tab.page.locator("#folds tr").count() == 1 + 3
    assert "no training curves" in tab.page.inner_text("#no-curves").lower()  # TF-IDF trains without steps
    tab.open(f"{studio.url}/run/ens")
    tab.page.click("#members >> text=cv-b")
    assert tab.page.url.endswith("/run/group/cv-b")
    tab.no_errors()


def test_errors_page_filters_sorts_searches_pages_and_exports(studio, runs_dir, tab):
    ids, predicted, names = table(runs_dir / "cv-a" / "oof_predictions.csv")
    _, gold, _ = table(runs_dir / "cv-a" / "oof_labels.csv")
    joy = names.index("joy")
    expected = [i for i, row_id in enumerate(ids) if predicted[i, joy] and not gold[i, joy]]
    tab.open(f"{studio.url}/errors/cv-a?per=25")
    tab.page.select_option("select[name=label]", "joy")
    tab.page.select_option("select[name=kind]", "fp")
    tab.page.select_option("select[name=sort]", "confidence")
    tab.page.click("text=Show")
    assert tab.page.inner_text("#count").startswith(f"{len(expected)} row(s)")
    shown = tab.page.locator("#errors tbody tr").evaluate_all("rows => rows.map(r => r.dataset.id)")
    assert set(shown) <= {ids[i] for i in expected} and len(shown) == min(25, len(expected))
    for row in tab.page.locator("#errors tbody tr").all():
        assert "joy" in row.locator(".tag.fp").all_inner_texts()
    confidence = [float(t) for t in tab.page.locator("#errors tbody td.num").all_inner_texts()]
    assert confidence == sorted(confidence, reverse=True)
    tab.shot("errors")
    csv_text = tab.page.request.get(studio.url + tab.page.get_attribute("#csv", "href")).text()
    exported = list(csv.DictReader(io.StringIO(csv_text)))
    assert sorted(r["ID"] for r in exported) == sorted(ids[i] for i in expected)
    assert all("joy" in r["false_positives"].split() for r in exported)
    tab.open(f"{studio.url}/errors/cv-a?per=25&q=happy")
    texts = tab.page.locator("#errors td.text").all_inner_texts()
    assert texts and all("happy" in t.lower() for t in texts)
    tab.open(f"{studio.url}/errors/cv-a?per=25")
    tab.page.click("#next")
    assert "page 2 of" in tab.page.inner_text("#count")
    for folder in FOLDERS:  # a run's held-out fold, a cv's and an ensemble's out-of-fold rows: texts and gold
        tab.open(f"{studio.url}/errors/{folder}?per=200")
        assert tab.page.locator("#rows-note").count() == 0, tab.page.inner_text("#rows-note")
        held = "val_predictions.csv" if folder == "tfidf-run" else "oof_predictions.csv"
        assert tab.page.inner_text("#count").startswith(f"{len(table(runs_dir / folder / held)[0])} row(s)")
        assert "(text not available)" not in tab.page.inner_text("#errors")
    tab.no_errors()


def test_a_tweet_holding_markup_is_shown_as_text(studio, tab):
    from .studio_harness import XSS

    tab.open(f"{studio.url}/errors/cv-a?q=onerror")
    cell = tab.page.locator("#errors td.text").first
    assert XSS in cell.inner_text()
    assert cell.locator("img, script").count() == 0
    assert tab.page.evaluate("window.__xss") is None
    tab.no_errors()


def test_compare_shows_per_label_f1_recipe_difference_and_the_bootstrap(studio, runs_dir, tab):
    tab.open(studio.url + "/")
    tab.page.check('input[value="cv-a"]')
    tab.page.check('input[value="group/cv-b"]')
    tab.page.click("#compare")
    tab.page.wait_for_selector("#chart-compare svg")
    order = tab.page.locator("#compare-table tr").first.locator("th").all_inner_texts()[1:]
    assert sorted(order) == ["cv-a", "group/cv-b"]  # in the runs table's order
    metrics = [json.loads((runs_dir / f / "oof_metrics.json").read_text()) for f in order]
    for row in tab.page.locator("#compare-table tr").all()[1:]:
        label, *values = row.locator("td").all_inner_texts()
        assert values == [f"{m['per_label'][label]['f1']:.3f}" for m in metrics]
    fields = tab.page.locator("#recipe-diff tr td:first-child").all_inner_texts()
    assert fields == ["classifier.char_ngrams", "classifier.logreg_c"]
    ids, gold, _ = table(runs_dir / order[0] / "oof_labels.csv")
    first = table(runs_dir / order[0] / "oof_predictions.csv")[1]
    other_ids, other, _ = table(runs_dir / order[1] / "oof_predictions.csv")
    assert other_ids == ids
    found = paired_bootstrap(gold, other, first)
    cells = tab.page.locator("#bootstrap tr").nth(1).locator("td").all_inner_texts()
    assert cells[4] == f"{found['diff']:+.4f}"
    assert cells[5] == f"[{found['ci95'][0]:+.4f}, {found['ci95'][1]:+.4f}]"
    within = found["ci95"][0] <= 0 <= found["ci95"][1]
    assert ("within noise" in cells[6]) == within
    tab.shot("compare")
    tab.no_errors()


def test_try_it_gives_the_labels_emotion_model_gives(studio, runs_dir, tab):
    from gen_emotion import EmotionModel

    texts = ["What a wonderful day, I am so happy!", "This is awful, I am furious and sad."]
    with EmotionModel.load(runs_dir / "tfidf-run") as model:
        expected = [", ".join(labels) or "none" for labels in model.predict(texts).label_names]
    tab.open(f"{studio.url}/try/tfidf-run")
    tab.page.fill("#texts", "\n".join(texts))
    tab.page.click("#try-button")
    tab.page.wait_for_selector("#chart-try svg")
    assert tab.page.locator("#try-results .labels").all_inner_texts() == expected
    tab.shot("try")
    tab.no_errors()
