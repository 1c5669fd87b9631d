"""The one exception type the command line turns into a one-line message."""


class GenEmotionError(Exception):
    """A problem the user can fix: bad input, a bad recipe, a missing dependency.

    The message is one line that names the file, row or setting and says what is wrong.
    """
