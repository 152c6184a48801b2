"""Errors that end a command or a request with a clear message instead of a traceback."""


class LookalikeError(Exception):
    """An operator-facing failure: the message says what is wrong and what to do about it."""


class DatabaseUnavailableError(LookalikeError):
    """The database cannot be reached, or lacks what Lookalike needs (pgvector >= 0.8)."""


class CatalogConfigError(LookalikeError):
    """A catalog mapping setting (``LOOKALIKE_FIELD_*``, ``LOOKALIKE_VISIBLE_WHERE``, the table or
    its key) does not fit the live table; the message names the setting and the database's reason."""


class RequestError(Exception):
    """Bad input found by a route (the HTTP layer): becomes a 4xx ``{"error": {"code", "message"}}``
    response with the status it names. Services raise a :class:`DomainError` instead."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class DomainError(Exception):
    """A request the services cannot carry out, for a reason the client can act on.

    Services raise these without knowing HTTP; :mod:`api.http_errors` maps each family to its status
    in one table (``DOMAIN_ERROR_STATUS``). ``code`` is the stable machine-readable part of the answer.
    """

    code = "invalid_request"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class NotFoundError(DomainError):
    """What the request names does not exist (any more)."""


class ConflictError(DomainError):
    """The request is well formed but the catalog's state does not allow it."""


class BadImageInputError(DomainError):
    """The image bytes as sent cannot be read at all (empty, not base64)."""


class FileTooLargeError(DomainError):
    code = "file_too_large"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the image is {size:,} bytes; the limit is {limit:,} bytes")


class CropOutsideImageError(DomainError):
    code = "crop_outside_image"


class ProductNotFoundError(NotFoundError):
    code = "product_not_found"

    def __init__(self, sku: str) -> None:
        super().__init__(f"no product with sku {sku!r}")


class CatalogManagedByShopError(ConflictError):
    code = "catalog_managed_by_shop"

    def __init__(self) -> None:
        super().__init__(
            "this catalog is the shop's own product table (LOOKALIKE_FIELD_* mappings): edit products "
            "in the shop's admin; Lookalike picks the changes up by itself"
        )
