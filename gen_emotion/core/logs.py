"""The log: to stderr and, for a run, to the run folder's ``run.log`` (this process's and its step processes'
lines, and the training libraries' warnings), with secrets redacted in both (``redaction.redact``)."""

from __future__ import annotations

import logging
from pathlib import Path

from gen_emotion.core.redaction import redact

LIBRARY_LOGGERS = ("transformers", "trl", "peft", "accelerate", "vllm")
LOG_FILE = "run.log"


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
