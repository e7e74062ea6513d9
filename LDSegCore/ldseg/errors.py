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
