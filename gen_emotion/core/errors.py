"""The one exception type the command line turns into a one-line message, and the exit status of a Ctrl-C."""

EXIT_INTERRUPTED = 130
"""The exit status after a Ctrl-C (128 + SIGINT), whenever it comes."""


class GenEmotionError(Exception):
    """A problem the user can fix: bad input, a bad recipe, a missing dependency.

    The message is one line that names the file, row or setting and says what is wrong.
    """
