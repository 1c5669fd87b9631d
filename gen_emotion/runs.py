"""Run folders: where they go, the resolved recipe they hold, their log, and the data they were run on.

Every command that trains (``run``, ``cv``) writes one run folder: ``recipe.yaml`` (the resolved recipe, so a
resumed run can be checked against it) and ``run.log`` (this process's and its step processes' log, secrets
redacted), beside what the command itself writes.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import resource
import shutil
import sys
from dataclasses import replace
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from gen_emotion.data import SEMEVAL_COLUMNS, Columns, EmotionData, data_file, read_test, read_train
from gen_emotion.errors import GenEmotionError
from gen_emotion.files import make_folder, read_json, write_json, write_text
from gen_emotion.recipes import SECRET_NAMES, Recipe, recipe_from_dict

log = logging.getLogger(__name__)

LIBRARY_LOGGERS = ("transformers", "trl", "peft", "accelerate", "vllm")
RECIPE_FILE = "recipe.yaml"
LOG_FILE = "run.log"
DATA_FILE = "data.json"
LOCK_FILE = ".gen-emotion.lock"  # gen_emotion.locks: the folder's writer holds it
KEPT_ON_RESTART = (LOCK_FILE,)


def sample_data_dir() -> Path:
    """The illustrative labelled sample shipped with the package (not real tweets)."""
    return Path(str(resources.files("gen_emotion") / "sample_data"))


def default_run_dir(recipe: Recipe, prefix: str = "") -> Path:
    """``runs/[PREFIX]RECIPE-TIME``."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{prefix}{recipe.name}-{stamp}"


MASK = "***"
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def mask_url(url: str) -> str:
    """A URL safe to print: a user name and password become ``***@``, every query value ``***`` (a presigned
    URL's signature is a credential); the scheme, host, path and query keys stay."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = "&".join(
        f"{key}={MASK}" if sep else key for key, sep, _ in (item.partition("=") for item in parts.query.split("&"))
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query if parts.query else ""))


def redact(text: str) -> str:
    """``text`` with the values of secret environment variables and the credentials inside URLs masked."""
    for name in SECRET_NAMES:
        value = os.environ.get(name, "")
        if len(value) >= 4:
            text = text.replace(value, MASK)
    if "://" in text:
        text = _URL.sub(lambda match: mask_url(match.group(0)), text)
    return text


class RedactSecrets(logging.Filter):
    """Mask secrets (``redact``) in log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def setup_logging(run_dir: Path | None = None, verbose: bool = True) -> None:
    """Log to stderr and, for a run, append to ``run_dir/run.log``; secrets are redacted in both."""
    root = logging.getLogger("gen_emotion")
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    handlers: list[logging.Handler] = []
    if verbose:
        handlers.append(logging.StreamHandler())
    if run_dir is not None:
        handlers.append(logging.FileHandler(run_dir / LOG_FILE, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        handler.addFilter(RedactSecrets())
        root.addHandler(handler)
    if run_dir is not None:  # the libraries' warnings into run.log too (they print to the terminal themselves)
        library_file = logging.FileHandler(run_dir / LOG_FILE, encoding="utf-8")
        library_file.setLevel(logging.WARNING)
        library_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(name)s] %(message)s", "%H:%M:%S"))
        library_file.addFilter(RedactSecrets())
        for name in LIBRARY_LOGGERS:
            library = logging.getLogger(name)
            for handler in [h for h in library.handlers if getattr(h, "gen_emotion", False)]:
                library.removeHandler(handler)
                handler.close()
            library_file.gen_emotion = True  # type: ignore[attr-defined]
            library.addHandler(library_file)


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


def read_data(
    data_dir: Path, rows: int | None = None, columns: Columns = SEMEVAL_COLUMNS
) -> tuple[EmotionData, EmotionData]:
    """The ``train`` and ``test`` files of ``data_dir`` (``data.data_file``: CSV, TSV, JSON Lines, Parquet or a
    datasets folder), cut to their first ``rows`` rows when given; the test file's label columns, if any, are
    the training file's."""
    full = read_train(data_file(data_dir, "train"), columns)
    test = read_test(data_file(data_dir, "test"), replace(columns, labels=full.label_names))
    if rows is not None:
        if rows < 2:
            raise GenEmotionError(f"--rows must be at least 2, got {rows}")
        full, test = full.subset(np.arange(min(rows, len(full)))), test.subset(np.arange(min(rows, len(test))))
    return full, test


def peak_memory() -> dict[str, float]:
    """Peak resident memory of this process and its finished children (MiB) and, where CUDA was used in this
    process, its peak GPU memory (MiB): allocated by tensors, and reserved by PyTorch's caching allocator (what
    the GPU must hold)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    peak = {"peak_rss_mib": round(max(own, children) / 1024, 1)}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        peak["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        peak["peak_cuda_reserved_mib"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
    return peak


def machine() -> dict[str, Any]:
    """Where a run ran: Python, platform and CPU count."""
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
