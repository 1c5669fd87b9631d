"""A sweep's space file is checked against the recipe's declared fields before anything is written or trained: each
mistake is one line (the config engine's own words and did-you-mean where it is a recipe field's), exit status 2;
a good one gives Optuna's distributions."""

from __future__ import annotations

from pathlib import Path

import pytest

from gen_emotion.cli.parser import main
from gen_emotion.config.recipes import load_recipe
from gen_emotion.sweeps.space import read_space

REPO = Path(__file__).resolve().parents[2]
SHIPPED_SPACE = REPO / "recipes" / "sweeps" / "tfidf-space.yaml"

BAD = {
    "unknown field": (
        "params: {classifier.logreg_cc: {low: 1, high: 2}}",
        "params.classifier.logreg_cc: unknown key 'classifier.logreg_cc'; did you mean classifier.logreg_c?",
    ),
    "low above high": ("params: {classifier.logreg_c: {low: 2, high: 1}}", "low (2) is above high (1)"),
    "a choice the field refuses": (
        "params: {classifier.pooling: {choices: [model, max]}}",
        "classifier.pooling must be one of model, mean, got 'max'",
    ),
    "a log range through 0": (
        "params: {classifier.logreg_c: {low: 0, high: 4, log: true}}",
        "a log range must stay above 0, got low 0",
    ),
    "an end the field refuses": (
        "params: {classifier.logreg_c: {low: 0, high: 4}}",
        "classifier.logreg_c must be above 0, got 0.0",
    ),
    "a range on a true/false field": (
        "params: {classifier.char_ngrams: {low: 0, high: 1}}",
        "a range needs an int or float field; this one is bool: give choices",
    ),
    "a misspelt range key": ("params: {classifier.logreg_c: {lo: 1, high: 2}}", "unknown key 'lo'; did you mean low?"),
    "a value against another field": (
        "params: {data.fold: {choices: [3, 12]}}",
        "data.fold must be in 0..9 (data.folds=10), got 12",
    ),
    "a misspelt section": ("parms: {}", "unknown section 'parms'; did you mean params?"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_mistake_is_one_line_and_nothing_is_written(case, tmp_path, capsys):
    text, expected = BAD[case]
    space = tmp_path / "space.yaml"
    space.write_text(text + "\n")
    out = tmp_path / "sweep"
    assert main(["sweep", "tfidf-logreg", "--space", str(space), "--trials", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"gen-emotion: error: {space}: ") and expected in err[0], err
    assert not out.exists()


def test_every_mistake_of_a_file_is_its_own_line(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(
        "params:\n  classifier.logreg_c: {low: 2, high: 1}\n  classifier.pooling: {choices: [max]}\n"
        "  classifier.char_ngrams: {choices: [true, false]}\n"
    )
    with pytest.raises(Exception) as caught:
        read_space(space, load_recipe("tfidf-logreg"))
    lines = str(caught.value).splitlines()
    assert len(lines) == 2 and "logreg_c" in lines[0] and "pooling" in lines[1]


def test_the_shipped_space_gives_optunas_distributions():
    optuna = pytest.importorskip("optuna")
    space = read_space(SHIPPED_SPACE, load_recipe("tfidf-logreg"))
    found = space.distributions()
    assert found["classifier.logreg_c"] == optuna.distributions.FloatDistribution(0.25, 64.0, log=True)
    assert found["classifier.char_ngrams"] == optuna.distributions.CategoricalDistribution((True, False))
