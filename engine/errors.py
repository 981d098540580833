"""One exception type per kind of failure, each with a message a user can act on.

The UI shows ``str(error)``; the CLI prints it and exits non-zero. Everything the engine raises
on purpose derives from :class:`StudioError`, so callers can tell a user mistake (bad file, bad
slider value, unknown model) from a bug.
"""


class StudioError(Exception):
    """Base class of every error the engine raises on purpose."""


class AudioFileError(StudioError):
    """An audio file could not be used: missing, empty, corrupt, not audio, NaN/Inf, too long..."""


class InvalidRequestError(StudioError):
    """A generation or training request has a value out of range or of the wrong kind."""


class ModelNotFoundError(StudioError):
    """No model folder or alias matches the name the user gave."""


class CheckpointError(StudioError):
    """A model folder exists but its manifest or weights are missing, corrupt or inconsistent."""


class DatasetError(StudioError):
    """The training data set is missing, empty or malformed."""
