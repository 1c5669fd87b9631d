"""What a sweep leaves beside its trials: ``sweep.json`` (every trial: settings, objective, state, time), the winning
recipe (``best_recipe.yaml``), Optuna's own plots of the search, and the ensemble of the best trials."""

from __future__ import annotations

import logging
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gen_emotion.config.recipes import Recipe, load_recipe
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.files import write_text
from gen_emotion.sweeps.space import overrides
from gen_emotion.sweeps.study import import_optuna

log = logging.getLogger(__name__)

SWEEP_FILE = "sweep.json"
BEST_RECIPE = "best_recipe.yaml"
PLOTS = {"history": "optimization_history.png", "importance": "param_importances.png"}
OBJECTIVE_WORDS = {
    "oof": "honest out-of-fold macro-F1 (thresholds tuned on other rows)",
    "held_out": "honest held-out macro-F1 of a run",
}


def best_trial(study: Any) -> Any | None:
    """The complete trial with the highest objective (the lowest number among equals), or ``None``."""
    optuna = import_optuna()
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return max(complete, key=lambda t: (t.value, -t.number)) if complete else None


def top_trials(study: Any, k: int) -> list[Any]:
    """The ``k`` complete trials with the highest objective, best first."""
    optuna = import_optuna()
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return sorted(complete, key=lambda t: (-t.value, t.number))[:k]


def best_recipe(sweep_dir: Path, trial: Any) -> Recipe:
    """The sweep's recipe with the best trial's settings, under the sweep recipe's own name."""
    return load_recipe(sweep_dir / "recipe.yaml", overrides(trial.params))


def write_best_recipe(sweep_dir: Path, trial: Any, trials: int, objective: str, space_path: str) -> Path:
    """``best_recipe.yaml``: the resolved recipe with the winning settings, and a comment saying where it came from."""
    recipe = best_recipe(sweep_dir, trial)
    settings = ", ".join(f"{k}={v}" for k, v in trial.params.items())
    header = (
        f"# The best of {trials} trials of gen-emotion sweep {sweep_dir} (space {space_path}): trial {trial.number}\n"
        f"# ({trial.user_attrs.get('folder')}), {OBJECTIVE_WORDS[objective]} {trial.value:.4f}, written "
        f"{datetime.now(UTC).isoformat(timespec='seconds')}.\n"
        f"# Settings searched: {settings}.\n"
        "# The best of many trials is chosen on the rows that score it: its figure is optimistic (docs/sweeps.md;\n"
        "# sweep --holdout scores it once on rows no trial saw).\n"
    )
    path = sweep_dir / BEST_RECIPE
    write_text(path, header + recipe.to_yaml())
    return path


def write_plots(study: Any, sweep_dir: Path) -> dict[str, str]:
    """Optuna's optimization history and parameter importances (its matplotlib plots) as PNGs; a plot Optuna cannot
    draw yet (importances need two complete trials) is left out and said in the log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

    written = {}
    for key, draw in (("history", plot_optimization_history), ("importance", plot_param_importances)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
            try:
                axes = draw(study)
            except (ValueError, RuntimeError, ZeroDivisionError) as err:
                log.info("%s not drawn: %s", PLOTS[key], str(err).strip().splitlines()[0] if str(err) else err)
                continue
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        figure.savefig(sweep_dir / PLOTS[key], dpi=110, bbox_inches="tight")
        plt.close(figure)
        written[key] = PLOTS[key]
    return written


def ensemble_top(study: Any, sweep_dir: Path, k: int) -> dict[str, Any]:
    """The ``k`` best trials ensembled by ``gen-emotion ensemble``'s own code into ``ensemble-topK/``."""
    from gen_emotion.evaluation.ensemble import run_ensemble

    best = top_trials(study, k)
    if len(best) < 2:
        raise GenEmotionError(f"--ensemble-top {k}: {len(best)} complete trial(s); an ensemble needs two")
    out = sweep_dir / f"ensemble-top{k}"
    metrics = run_ensemble([sweep_dir / t.user_attrs["folder"] for t in best], out)
    return {
        "folder": out.name,
        "trials": [t.number for t in best],
        "macro_f1": metrics.macro_f1,
        "honest_macro_f1": metrics.macro_f1_thresholds_cv,
    }
