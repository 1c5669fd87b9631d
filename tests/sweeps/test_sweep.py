"""``gen-emotion sweep`` on TF-IDF and the shipped sample, end to end: each trial an ordinary cv folder whose honest
out-of-fold macro-F1 is the trial's objective, the study read back with Optuna's own API, the best recipe, the
plots, the ensemble of the best and the holdout figure; a failing trial recorded with its reason and a pruned one
whose folder says so, the sweep going on; killed (SIGKILL) at seeded random moments and rerun, the same trials and
the same best recipe as the sweep never killed."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import faults
import pytest
import yaml
from conftest import SAMPLE_DIR

from gen_emotion.cli.parser import main
from gen_emotion.config.recipes import load_recipe
from gen_emotion.runs.folder import read_folder_metrics, read_run_metrics
from gen_emotion.runs.locks import lock_path
from gen_emotion.sweeps.space import read_space
from gen_emotion.sweeps.study import open_study, propose

optuna = pytest.importorskip("optuna")

REPO = Path(__file__).resolve().parents[2]
SHIPPED_SPACE = REPO / "recipes" / "sweeps" / "tfidf-space.yaml"
CLI = [sys.executable, "-m", "gen_emotion.cli.parser"]
HARD_SPACE = """
params:
  classifier.logreg_c: {choices: [0.01, 4.0]}      # on the sample, 4.0's folds score well below 0.01's
  data.text_column: {choices: [Tweet, Nope]}       # the sample has no column Nope: such a trial fails
pruner: {startup_trials: 1, warmup_folds: 0}
"""
TRIALS = 8


def sweep_args(space: Path, out: Path, *extra: str, trials: int = TRIALS) -> list[str]:
    return [
        "sweep",
        "tfidf-logreg",
        "--space",
        str(space),
        "--trials",
        str(trials),
        "--folds",
        "3",
        "--out",
        str(out),
        *extra,
    ]


def trials_of(sweep_dir: Path) -> list[tuple]:
    """Each trial of ``sweep.json`` as what must not change from one run of the same command to the next."""
    rows = json.loads((sweep_dir / "sweep.json").read_text())["trials"]
    return [(t["number"], t["state"], t["params"], t["objective"], t["fold_scores"], t.get("reason")) for t in rows]


def recipe_lines(path: Path) -> list[str]:
    """``best_recipe.yaml`` but its comment (which says when it was written)."""
    return [line for line in path.read_text().splitlines() if not line.startswith("#")]


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped space, 4 trials of 3 folds, a fifth of the rows held out, the 2 best trials ensembled."""
    out = tmp_path_factory.mktemp("sweep") / "full"
    args = sweep_args(SHIPPED_SPACE, out, "--holdout", "0.2", "--ensemble-top", "2", trials=4)
    assert main(args) == 0
    return out


def test_each_trial_is_a_cv_folder_scored_by_its_honest_out_of_fold_figure(full, tmp_path):
    summary = json.loads((full / "sweep.json").read_text())
    assert summary["counts"] == {"complete": 4} and summary["finished"]
    for row in summary["trials"]:
        folder = full / row["folder"]
        assert folder.name.startswith(f"{row['number']:03d}-tfidf-logreg")
        metrics = read_folder_metrics(folder)
        assert row["objective"] == metrics.macro_f1_thresholds_cv and metrics.folds == 3
        assert len(row["fold_scores"]) == 3 and row["seconds"] is not None
        assert json.loads((folder / "trial.json").read_text())["state"] == "complete"
        assert load_recipe(folder / "recipe.yaml").classifier.logreg_c == row["params"]["classifier.logreg_c"]
    assert len({json.dumps(row["params"], sort_keys=True) for row in summary["trials"]}) == 4
    best = max(summary["trials"], key=lambda row: row["objective"])
    assert summary["best"]["number"] == best["number"]
    # what works on a cv folder works on a trial
    out = tmp_path / "predicted.csv"
    assert (
        main(["predict", str(full / best["folder"]), "--input", str(SAMPLE_DIR / "test.csv"), "--out", str(out)]) == 0
    )
    assert len(out.read_text().splitlines()) == 81


def test_the_studio_lists_the_trials_of_a_sweep_folder(full):
    from gen_emotion.studio.folders import all_rows

    rows = {row.path: row for row in all_rows(full.parent)}
    trials = json.loads((full / "sweep.json").read_text())["trials"]
    for trial in trials:
        row = rows[f"full/{trial['folder']}"]
        assert row.kind == "cv" and row.honest == trial["objective"]
    assert "full" not in rows and rows["full/ensemble-top2"].kind == "ensemble"


def test_the_study_reads_back_with_optunas_own_api(full):
    summary = json.loads((full / "sweep.json").read_text())
    study = optuna.load_study(study_name=summary["study"], storage=f"sqlite:///{full / 'study.db'}")
    assert [(t.number, t.params, t.value) for t in study.trials] == [
        (row["number"], row["params"], row["objective"]) for row in summary["trials"]
    ]
    assert study.best_trial.number == summary["best"]["number"]


def test_the_best_recipe_the_plots_the_ensemble_and_the_holdout(full):
    summary = json.loads((full / "sweep.json").read_text())
    best = summary["best"]
    text = (full / "best_recipe.yaml").read_text()
    assert text.startswith("# The best of 4 trials of gen-emotion sweep") and f"trial {best['number']}" in text
    recipe = load_recipe(full / "best_recipe.yaml")
    assert recipe.name == "tfidf-logreg"
    assert [recipe.classifier.logreg_c, recipe.classifier.char_ngrams, recipe.classifier.demojize] == [
        best["params"][f"classifier.{k}"] for k in ("logreg_c", "char_ngrams", "demojize")
    ]
    assert all((full / name).stat().st_size > 1000 for name in summary["plots"].values())
    assert set(summary["plots"]) == {"history", "importance"}
    ensemble = read_folder_metrics(full / "ensemble-top2")
    ranked = sorted(summary["trials"], key=lambda row: -row["objective"])
    assert summary["ensemble"]["trials"] == [row["number"] for row in ranked[:2]]
    assert [m["run_dir"] for m in ensemble.members] == [str(full / row["folder"]) for row in ranked[:2]]
    # the holdout: 60 rows no trial saw (every trial's cv covers the other 240), scored once by the best recipe
    held = summary["holdout"]
    assert held["rows"] == 60 and held["best_trial_objective"] == best["objective"]
    assert json.loads((full / held["folder"] / "metrics.json").read_text())["held_out"]["split"] == "validation"
    assert all(read_folder_metrics(full / row["folder"]).rows == 240 for row in summary["trials"])


def test_the_held_out_objective_makes_each_trial_a_run_folder(tmp_path):
    out = tmp_path / "sweep"
    assert main(sweep_args(SHIPPED_SPACE, out, "--objective", "held_out", trials=2)) == 0
    for row in json.loads((out / "sweep.json").read_text())["trials"]:
        metrics = read_run_metrics(out / row["folder"])
        assert row["state"] == "complete" and row["objective"] == metrics.honest_macro_f1
        assert metrics.held_out["fold"] == 0 and metrics.held_out["folds"] == 10  # the recipe's own held-out fold


@pytest.fixture(scope="module")
def hard(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A sweep whose trials fail (a column the data lacks) or are pruned, never killed."""
    root = tmp_path_factory.mktemp("hard")
    space = root / "space.yaml"
    space.write_text(HARD_SPACE)
    assert main(sweep_args(space, root / "whole")) == 0
    return space, root / "whole"


def test_a_failing_trial_is_recorded_with_its_reason_and_a_pruned_one_says_so(hard):
    _, whole = hard
    rows = json.loads((whole / "sweep.json").read_text())["trials"]
    assert len(rows) == TRIALS
    states = {row["state"] for row in rows}
    assert states == {"complete", "fail", "pruned"}, states
    for row in rows:
        held = json.loads((whole / row["folder"] / "trial.json").read_text())
        if row["params"]["data.text_column"] == "Nope":
            assert row["state"] == "fail" and "missing column 'Nope'" in row["reason"] and "\n" not in row["reason"]
            assert held["state"] == "fail" and held["reason"] == row["reason"]
        elif row["state"] == "pruned":
            assert row["params"]["classifier.logreg_c"] == 4.0 and row["reason"].startswith("pruned after fold 1 of 3")
            assert held["state"] == "pruned" and held["reason"] == row["reason"]
            assert not (whole / row["folder"] / "oof_metrics.json").exists()
    study = optuna.load_study(
        study_name=json.loads((whole / "settings.json").read_text())["study"], storage=f"sqlite:///{whole / 'study.db'}"
    )
    assert [t.state.name.lower() for t in study.trials] == [row["state"] for row in rows]


def test_a_sweep_killed_at_random_moments_resumes_to_the_same_trials_and_best_recipe(hard, tmp_path):
    """Two kills land inside a trial (seeded: a complete trial of the uninterrupted sweep, once its first fold is
    saved), two at seeded moments of the time the uninterrupted sweep held its folder's lock, each rerun going on
    from what the kills before it left."""
    space, whole = hard
    reference = tmp_path / "reference"
    command = [*CLI, *sweep_args(space, reference)]
    first, last = faults.timed(command, lambda: lock_path(reference).exists())
    assert trials_of(reference) == trials_of(whole)  # a sweep in a process of its own: the same trials
    cut = tmp_path / "cut"
    command = [*CLI, *sweep_args(space, cut)]
    rng = random.Random(34)
    for k in sorted(rng.sample([row[0] for row in trials_of(whole) if row[1] == "complete"], 2)):
        fold = cut / "trials" / f"{k:03d}-tfidf-logreg" / "folds" / "fold-0" / "fold.json"
        faults.kill_when(command, fold.is_file, f"trial {k}'s first fold")
    for moment in sorted(rng.sample(range(500), 2)):
        faults.kill_after(command, first + (last - first) * moment / 1000)
    assert main(sweep_args(space, cut)) == 0
    assert trials_of(cut) == trials_of(whole)
    assert recipe_lines(cut / "best_recipe.yaml") == recipe_lines(whole / "best_recipe.yaml")
    assert "cut by an earlier command" in (cut / "run.log").read_text()  # a kill landed inside a trial
    numbers = [row[0] for row in trials_of(cut)]
    assert numbers == list(range(TRIALS))  # no trial number used twice, none skipped
    assert sorted(p.name[:3] for p in (cut / "trials").iterdir()) == [f"{n:03d}" for n in range(TRIALS)]


def test_a_trial_cut_between_its_proposal_and_its_start_or_amid_its_settings_runs_with_its_own(hard, tmp_path):
    """The two kills too narrow for random moments to hit: after the proposal was enqueued (WAITING) and before it
    was started, and after it was started with only some of its settings written (RUNNING)."""
    space_path, whole = hard
    out = tmp_path / "sweep"
    assert main(sweep_args(space_path, out, trials=2)) == 0
    settings = json.loads((out / "settings.json").read_text())
    space = read_space(space_path, load_recipe(out / "recipe.yaml"))
    study = open_study(f"sqlite:///{out / 'study.db'}", settings["study"], 42)
    study.enqueue_trial(propose(study, 2, space, 42, 1))  # cut here: trial 2 WAITING
    assert main(sweep_args(space_path, out, trials=3)) == 0
    study.enqueue_trial(propose(study, 3, space, 42, 1))
    first = space.params[0]
    study.ask({first.name: first.distribution()})  # cut here: trial 3 RUNNING with one of its two settings
    assert main(sweep_args(space_path, out, trials=4)) == 0
    assert trials_of(out) == trials_of(whole)[:4]


def test_a_rerun_with_other_settings_is_refused_and_one_with_more_trials_goes_on(hard, capsys):
    space, whole = hard
    before = trials_of(whole)
    assert main([*sweep_args(space, whole), "--objective", "held_out"]) == 2
    assert "was started with other objective" in capsys.readouterr().err
    assert main([*sweep_args(space, whole), "classifier.char_ngrams=false"]) == 2
    assert "was started with other recipe settings" in capsys.readouterr().err
    # a recipe.yaml written before a newer gen-emotion added a section reads as that section's defaults
    recipe_file = whole / "recipe.yaml"
    written = yaml.safe_load(recipe_file.read_text())
    recipe_file.write_text(yaml.safe_dump({k: v for k, v in written.items() if k != "distill"}, sort_keys=False))
    assert main(sweep_args(space, whole, trials=TRIALS + 1)) == 0
    assert trials_of(whole)[:TRIALS] == before and len(trials_of(whole)) == TRIALS + 1
    assert yaml.safe_load((whole / "space.yaml").read_text())["pruner"]["startup_trials"] == 1
