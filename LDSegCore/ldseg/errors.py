"""Errors the engine reports to users.

Every problem a user can cause (bad file, bad values, bad model) is raised as an
:class:`LDSegError` subclass with a one-line message naming what is wrong and
where; the command line prints that line instead of a traceback.
"""


class LDSegError(Exception):
    """Base class of all user-facing engine errors."""


class InputError(LDSegError):
    """An image, label or data set that cannot be used as given."""


class ModelFileError(LDSegError):
    """A model file that is missing, corrupt, foreign or of a newer format."""


class OutputError(LDSegError):
    """An output location that cannot be written."""


class CancelledError(LDSegError):
    """The user cancelled the run."""


# -- the pieces of one-line messages -------------------------------------------------


def display_name(path) -> str:
    """Base name of a file or folder (either separator) for messages."""
    text = str(path).rstrip("/\\")
    return text.replace("\\", "/").rsplit("/", 1)[-1] or text


def short_list(items, limit: int = 5) -> str:
    """'a, b, c and 4 more': keeps a message on one short line."""
    items = [str(i) for i in items]
    extra = len(items) - limit
    return ", ".join(items[:limit]) + (f" and {extra} more" if extra > 0 else "")
