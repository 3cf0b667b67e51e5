"""Domain errors and the single table that maps them to HTTP statuses.

Everything that can go wrong while serving a request raises one of these;
the base handler renders them. Anything else is a bug and becomes a 500
with a generic body.
"""

from __future__ import annotations


class PhizerError(Exception):
    """Base of every error a client may see; ``str(err)`` is the body."""

    status = 500
    message = "internal error"

    def __init__(self, message: str | None = None, status: int | None = None) -> None:
        super().__init__(message or self.message)
        if status is not None:
            self.status = status


class BadRequest(PhizerError):
    status = 400
    message = "malformed request"


class Forbidden(PhizerError):
    status = 403
    message = "forbidden"


class NotFound(PhizerError):
    status = 404
    message = "not found"


class MethodNotAllowed(PhizerError):
    status = 405
    message = "method not allowed"


class SourceTooLarge(PhizerError):
    status = 413
    message = "source image too large"


class TooComplex(SourceTooLarge):
    """A file whose structure asks too much of a decoder (scans, chunks, blocks)."""

    message = "source image too complex"


class UriTooLong(PhizerError):
    status = 414
    message = "request URI too long"


class UnsupportedImage(PhizerError):
    status = 422
    message = "unsupported image format"


class OriginError(PhizerError):
    status = 502
    message = "origin error"


class BadImage(PhizerError):
    status = 502
    message = "origin sent an undecodable image"


class WorkerUnavailable(PhizerError):
    status = 503
    message = "worker unavailable"


class OriginTimeout(PhizerError):
    status = 504
    message = "origin timeout"


class WorkerTimeout(PhizerError):
    status = 504
    message = "worker timeout"


class DecodeTimeout(PhizerError):
    status = 504
    message = "image took too long to render"


class ConfigError(Exception):
    """A startup error: bad config file, option or flag."""


_BY_STATUS: dict[int, type[PhizerError]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        NotFound,
        MethodNotAllowed,
        SourceTooLarge,
        UriTooLong,
        UnsupportedImage,
        OriginError,
        WorkerUnavailable,
        OriginTimeout,
    )
}


def error_for_status(status: int, message: str) -> PhizerError:
    """Rebuild the error a worker answered with, so the front passes it on;
    a status without a class of its own (a 500 from a bug) keeps its number."""
    cls = _BY_STATUS.get(status)
    if cls is None:
        return PhizerError(message or None, status=status if 400 <= status < 600 else 500)
    return cls(message or None)
