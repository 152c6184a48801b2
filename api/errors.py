"""Errors that end a command or a request with a clear message instead of a traceback."""


class LookalikeError(Exception):
    """An operator-facing failure: the message says what is wrong and what to do about it."""


class DatabaseUnavailableError(LookalikeError):
    """The database cannot be reached, or lacks what Lookalike needs (pgvector >= 0.8)."""
