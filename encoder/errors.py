"""Typed errors so callers can map encoder failures to HTTP statuses without string matching."""


class EncoderError(Exception):
    """Base class for every error raised by the encoder package."""


class InvalidImageError(EncoderError):
    """The bytes are not an image we can decode safely (corrupt, truncated, unsupported, bomb).

    ``code`` is a stable machine-readable reason that the API puts in its 4xx body.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class EncoderUnavailableError(EncoderError):
    """The model cannot serve (weights missing, remote service down, circuit open).

    The API reacts by switching to a fallback mode, never by serving garbage vectors.
    """
