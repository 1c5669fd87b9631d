"""Run folders: where they go, the resolved recipe they hold, their log, and the data they were run on.

Every command that trains (``run``, ``cv``) writes one run folder: ``recipe.yaml`` (the resolved recipe, so a
resumed run can be checked against it) and ``run.log`` (this process's and its step processes' log, secrets
redacted), beside what the command itself writes.
"""

from __future__ import annotations

import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gen_emotion.data import data_file
from gen_emotion.errors import GenEmotionError
from gen_emotion.files import make_folder, read_json, write_json, write_text
from gen_emotion.recipes import Recipe, recipe_from_dict

log = logging.getLogger(__name__)

RECIPE_FILE = "recipe.yaml"
DATA_FILE = "data.json"
LOCK_FILE = ".gen-emotion.lock"  # gen_emotion.locks: the folder's writer holds it
KEPT_ON_RESTART = (LOCK_FILE,)


def default_run_dir(recipe: Recipe, prefix: str = "") -> Path:
    """``runs/[PREFIX]RECIPE-TIME``."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{prefix}{recipe.name}-{stamp}"


def load_run_recipe(run_dir: Path) -> Recipe:
    """The resolved recipe a run folder was started with."""
    import yaml

    path = run_dir / RECIPE_FILE
    if not path.is_file():
        raise GenEmotionError(f"{run_dir}: not a run folder (no {RECIPE_FILE})")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise GenEmotionError(f"{path}: damaged, not readable YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise GenEmotionError(f"{path}: damaged, holds {type(values).__name__}; expected a mapping of sections")
    generate = values.get("generate")
    if isinstance(generate, dict) and generate.get("probabilities") and "probability_source" not in generate:
        generate["probability_source"] = "samples"  # a run from before branches: its probabilities were sampled
    return recipe_from_dict(values, where=str(path))


def prepare_run_dir(recipe: Recipe, run_dir: Path, data_dir: Path | None = None, restart: bool = False) -> None:
    """Create the run folder and write the resolved recipe and the fingerprint of its data (``data.json``); a
    resumed run must use the same recipe and the same data, unless ``restart`` empties the folder first."""
    if restart and (run_dir / RECIPE_FILE).is_file():
        log.info("%s: --restart: removing what the earlier run wrote", run_dir)
        for path in run_dir.iterdir():
            if path.name not in KEPT_ON_RESTART:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
    make_folder(run_dir)
    fingerprint = data_fingerprint(data_dir) if data_dir is not None else None
    if (run_dir / RECIPE_FILE).is_file():
        if load_run_recipe(run_dir) != recipe:
            raise GenEmotionError(
                f"{run_dir} holds a run of a different recipe; resume with the same recipe, use a new --out, "
                "or --restart to start this folder over"
            )
        before = read_json(run_dir / DATA_FILE, "the data's fingerprint") if (run_dir / DATA_FILE).is_file() else None
        if fingerprint is not None and before is not None and before != fingerprint:
            changed = [split for split in fingerprint if before.get(split) != fingerprint[split]]
            raise GenEmotionError(
                f"{run_dir} was started on other data ({', '.join(changed)} changed since: "
                + "; ".join(_describe_change(before.get(split), fingerprint[split]) for split in changed)
                + "); resume with the same data, use a new --out, or --restart to start this folder over"
            )
    else:
        write_text(run_dir / RECIPE_FILE, recipe.to_yaml())
    if fingerprint is not None and not (run_dir / DATA_FILE).is_file():
        write_json(run_dir / DATA_FILE, fingerprint)


def data_fingerprint(data_dir: Path) -> dict[str, dict[str, Any]]:
    """The ``train`` and ``test`` files of ``data_dir``: their names, sizes and SHA-256 (a datasets folder: of
    every file in it, in name order)."""
    import hashlib

    found = {}
    for split in ("train", "test"):
        path = data_file(data_dir, split)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        digest, size = hashlib.sha256(), 0
        for file in files:
            digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode("utf-8") + b"\0")
            with file.open("rb") as handle:
                while block := handle.read(1 << 20):
                    digest.update(block)
                    size += len(block)
        found[split] = {"file": path.name, "bytes": size, "sha256": digest.hexdigest()}
    return found


def _describe_change(before: dict[str, Any] | None, now: dict[str, Any]) -> str:
    if not before:
        return f"{now['file']} is new"
    if before.get("file") != now["file"]:
        return f"{before.get('file')} is now {now['file']}"
    was = f"{before.get('bytes')} bytes, sha256 {str(before.get('sha256'))[:12]}"
    return f"{now['file']} was {was}, now {now['bytes']} bytes, sha256 {now['sha256'][:12]}"
