"""The ``gen-emotion`` command's entry point.

Its first act is to make a Ctrl-C while the toolkit is still importing end like one during a command: one
line and exit status 130, never a traceback. ``parser.main`` hands Ctrl-C back to Python's own handler once it
is inside its error handling.
"""

from __future__ import annotations

import signal
import sys

from gen_emotion.core.errors import EXIT_INTERRUPTED


def _interrupted_while_starting(signum: int, frame: object) -> None:
    sys.stderr.write("gen-emotion: interrupted\n")
    raise SystemExit(EXIT_INTERRUPTED)


signal.signal(signal.SIGINT, _interrupted_while_starting)


def main() -> int:
    from gen_emotion.cli.parser import main as run_command

    return run_command()
