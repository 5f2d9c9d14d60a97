"""Errors that reach the user as a short message instead of a traceback."""


class RAMError(Exception):
    """Base class: the command line prints ``str(err)`` and exits with status 2."""


class ConfigError(RAMError):
    """A configuration key or value is not allowed."""


class DataError(RAMError):
    """Data is missing, corrupt or could not be fetched."""


class CheckpointError(RAMError):
    """A checkpoint is missing, unreadable, unsafe or of another model."""
