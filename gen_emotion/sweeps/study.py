"""The Optuna study of a sweep: where it is kept, and how each trial's settings are proposed so that the same command
proposes the same settings, however often it is killed and rerun.

The study is Optuna's RDB storage: SQLite ``study.db`` in the sweep folder, or a ``--storage`` URL (PostgreSQL,
MySQL) for a cluster. Optuna's own ``study.optimize`` keeps one sampler whose random state moves on with every
call, so a rerun after a kill would propose other settings. Here each trial's settings are proposed by a TPE
sampler seeded from the recipe's seed and the trial's number, over exactly the trials it may see (``visible``: the
finished trials numbered below ``number - parallel + 1``, so the trials that may still run beside it never
count), on an in-memory copy of those trials (``propose``). The proposal is then enqueued (one transaction: a
WAITING trial holding its ``fixed_params``) and asked for, so a trial cut at any moment holds its whole settings:
a command killed between the two finds the WAITING trial and asks for it; one killed after finds it RUNNING
(``left_running``: the sweep folder's lock says no live command holds it) and runs it again under the same number
(``attach``). No trial number is used twice. The median pruner sees the same ``visible`` trials (``should_prune``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.sweeps.space import PrunerArgs, Space

log = logging.getLogger(__name__)

STUDY_DB = "study.db"
DIRECTION = "maximize"


def import_optuna() -> Any:
    """The ``optuna`` module, quiet; one line naming the extra where it is not installed."""
    try:
        import optuna
    except ImportError:
        raise GenEmotionError('gen-emotion sweep needs Optuna: pip install "gen-emotion[sweep]"') from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def storage_url(sweep_dir: Path, storage: str | None) -> str:
    """``--storage``, or SQLite ``study.db`` in the sweep folder."""
    return storage or f"sqlite:///{(sweep_dir / STUDY_DB).resolve()}"


def open_study(url: str, name: str, seed: int) -> Any:
    """The sweep's study in the storage at ``url`` (created the first time)."""
    optuna = import_optuna()
    from sqlalchemy.exc import SQLAlchemyError

    from gen_emotion.core.redaction import redact

    engine = {"connect_args": {"timeout": 300}} if url.startswith("sqlite") else {}
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=engine)
        return optuna.create_study(
            storage=storage,
            study_name=name,
            direction=DIRECTION,
            load_if_exists=True,
            sampler=optuna.samplers.TPESampler(seed=seed),
        )
    except (ImportError, ValueError, RuntimeError, SQLAlchemyError) as err:  # no driver, a bad URL, no database
        lines = str(err).strip().splitlines() or [type(err).__name__]
        raise GenEmotionError(f"study {redact(url)}: cannot open it ({redact(lines[0])})") from None


def trial_seed(seed: int, number: int) -> int:
    """The sampler seed of trial ``number`` of a sweep seeded ``seed``."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def visible(study: Any, number: int, parallel: int) -> list[Any]:
    """The finished trials (complete or pruned) that trial ``number`` is proposed from and pruned against: those
    numbered below ``number - parallel + 1`` (with ``parallel`` trials side by side, the others may still run)."""
    optuna = import_optuna()
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    below = number - parallel + 1
    return sorted(
        (t for t in study.get_trials(deepcopy=False, states=finished) if t.number < below), key=lambda t: t.number
    )


def waiting_for(study: Any, number: int, parallel: int) -> list[int]:
    """The trials below ``number - parallel + 1`` still running: trial ``number`` is proposed once they are done."""
    optuna = import_optuna()
    running = (optuna.trial.TrialState.RUNNING,)
    return [t.number for t in study.get_trials(deepcopy=False, states=running) if t.number < number - parallel + 1]


def mirror(trials: list[Any], sampler: Any) -> Any:
    """An in-memory study holding ``trials`` (in number order), for ``sampler`` or a pruner to read."""
    optuna = import_optuna()
    copy = optuna.create_study(direction=DIRECTION, sampler=sampler)
    copy.add_trials(trials)
    return copy


def propose(study: Any, number: int, space: Space, seed: int, parallel: int) -> dict[str, Any]:
    """Trial ``number``'s settings: TPE seeded by ``(seed, number)`` over the trials it may see (module docstring)."""
    optuna = import_optuna()
    sampler = optuna.samplers.TPESampler(
        seed=trial_seed(seed, number), n_startup_trials=space.settings.sampler.startup_trials
    )
    return dict(mirror(visible(study, number, parallel), sampler).ask(space.distributions()).params)


def start_trial(study: Any, space: Space, seed: int, parallel: int) -> int:
    """Start the next trial and return its number: a WAITING one a killed command enqueued, else a new proposal."""
    optuna = import_optuna()
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
        number = len(study.get_trials(deepcopy=False))
        study.enqueue_trial(propose(study, number, space, seed, parallel))
    return study.ask(space.distributions()).number


def left_running(study: Any) -> list[int]:
    """The trials a killed command left RUNNING (none can be live: the sweep folder's lock is held)."""
    optuna = import_optuna()
    return [t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))]


def frozen(study: Any, number: int) -> Any:
    """Trial ``number`` as the storage holds it now."""
    trials = study.get_trials(deepcopy=False)
    if not 0 <= number < len(trials) or trials[number].number != number:
        raise GenEmotionError(f"the study has no trial {number}")
    return trials[number]


def attach(study: Any, number: int, space: Space) -> Any:
    """An ``optuna.trial.Trial`` for RUNNING trial ``number`` (started by this command or a killed one), its
    settings complete: those a kill cut off are taken from the proposal it holds (``fixed_params``)."""
    optuna = import_optuna()
    trial = optuna.trial.Trial(study, frozen(study, number)._trial_id)  # Optuna has no public way to reattach
    for param in space.params:
        param.suggest(trial)  # the stored value, or the fixed one: nothing is sampled
    return trial


def should_prune(study: Any, number: int, parallel: int, args: PrunerArgs) -> bool:
    """Whether the median pruner stops trial ``number`` at its last reported fold, against the trials it may see."""
    if not args.enabled:
        return False
    optuna = import_optuna()
    pruner = optuna.pruners.MedianPruner(n_startup_trials=args.startup_trials, n_warmup_steps=args.warmup_folds)
    seen = mirror(visible(study, number, parallel), optuna.samplers.RandomSampler(seed=0))
    return bool(pruner.prune(seen, frozen(study, number)))


def seconds(trial: Any) -> float | None:
    """What a finished trial took: its folder's own figure where it kept one, else its start to its end."""
    if trial.user_attrs.get("seconds") is not None:
        return float(trial.user_attrs["seconds"])
    if trial.datetime_start and trial.datetime_complete:
        return round((trial.datetime_complete - trial.datetime_start).total_seconds(), 1)
    return None


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """Every trial of the study, for ``sweep.json``: number, state, settings, objective, time, folder, reason."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        rows.append(
            {
                "number": trial.number,
                "state": trial.state.name.lower(),
                "params": dict(trial.params),
                "objective": trial.value if trial.state.name == "COMPLETE" else None,
                "seconds": seconds(trial),
                "folder": trial.user_attrs.get("folder"),
                "fold_scores": {str(k): v for k, v in sorted(trial.intermediate_values.items())},
                **({"reason": trial.user_attrs["reason"]} if "reason" in trial.user_attrs else {}),
                "started": trial.datetime_start.isoformat(timespec="seconds") if trial.datetime_start else None,
            }
        )
    return rows
