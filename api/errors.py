"""Errors that end a command or a request with a clear message instead of a traceback."""


class LookalikeError(Exception):
    """An operator-facing failure: the message says what is wrong and what to do about it."""


class DatabaseUnavailableError(LookalikeError):
    """The database cannot be reached, or lacks what Lookalike needs (pgvector >= 0.8)."""


class CatalogConfigError(LookalikeError):
    """A catalog mapping setting (``LOOKALIKE_FIELD_*``, ``LOOKALIKE_VISIBLE_WHERE``, the table or
    its key) does not fit the live table; the message names the setting and the database's reason."""


class RequestError(Exception):
    """Bad input from a client: becomes a 4xx ``{"error": {"code", "message"}}`` response."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
