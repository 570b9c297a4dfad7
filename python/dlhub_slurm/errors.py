"""Errors from the DLHub service, as exceptions a notebook can catch by kind.

Every error the service sends is a document ``{"error": {"code", "message", "details"}}``; the
message says what to do. It arrives here as an instance of the subclass matching its code, with
``message``, ``code``, ``status`` and ``details`` kept.
"""


class DLHubError(Exception):
    """Anything the service (or the way to it) refused or could not do."""

    def __init__(self, message, code=None, status=None, details=None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.details = details or []

    def __str__(self):
        lines = [self.message]
        for d in self.details:
            if isinstance(d, dict) and d.get("path"):
                lines.append("  - %s: %s" % (d.get("path"), d.get("message", "")))
        return "\n".join(lines)


class AuthenticationError(DLHubError):
    """Munge or the token was refused (is munged running? is the clock right?)."""


class ForbiddenError(DLHubError):
    """Authenticated, but not allowed (an admin route, another owner's name)."""


class NotFoundError(DLHubError):
    """No such servable or task, or not one you may see."""


class InvalidInputError(DLHubError):
    """The request, the input or the metadata does not fit what the servable declares."""


class WithdrawnError(DLHubError):
    """That version was withdrawn; its tombstone still resolves, but it no longer runs."""


class ConflictError(DLHubError):
    """The request conflicts with the current state (e.g. cancelling a finished task)."""


class QuotaExceededError(DLHubError):
    """Too much queued for you at once; send more once some has finished."""


class ServiceUnavailableError(DLHubError):
    """The service cannot be reached, or cannot serve this now (pool paused, Slurm down)."""


class ServableError(DLHubError):
    """The servable ran and failed on an input: the message is the worker's own error.

    For several inputs, ``outputs`` holds what the others returned (None where one failed)
    and ``errors`` the failures by position.
    """

    def __init__(self, message, outputs=None, errors=None, task_id=None):
        super().__init__(message, code="worker_failed")
        self.outputs = outputs
        self.errors = errors
        self.task_id = task_id


class DLHubTimeoutError(DLHubError, TimeoutError):
    """No result within the time given. The task keeps running: ``get_result(task_id)`` later."""

    def __init__(self, message, task_id=None):
        super().__init__(message, code="timeout")
        self.task_id = task_id


_BY_CODE = {
    "unauthenticated": AuthenticationError,
    "munge_error": AuthenticationError,
    "forbidden": ForbiddenError,
    "not_found": NotFoundError,
    "bad_request": InvalidInputError,
    "invalid_input": InvalidInputError,
    "invalid_metadata": InvalidInputError,
    "invalid_archive": InvalidInputError,
    "invalid_name": InvalidInputError,
    "too_large": InvalidInputError,
    "withdrawn": WithdrawnError,
    "conflict": ConflictError,
    "quota_exceeded": QuotaExceededError,
    "unavailable": ServiceUnavailableError,
    "slurm_error": ServiceUnavailableError,
    "timeout": DLHubTimeoutError,
    "worker_failed": ServableError,
}

_BY_STATUS = {
    400: InvalidInputError,
    401: AuthenticationError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    410: WithdrawnError,
    413: InvalidInputError,
    429: QuotaExceededError,
    503: ServiceUnavailableError,
}


def from_document(status, document):
    """The exception for an error reply: by its code, else by its HTTP status."""
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return DLHubError("HTTP %d: %s" % (status, str(document)[:500]), status=status)
    code = error.get("code")
    message = error.get("message") or "HTTP %d" % status
    details = error.get("details") or []
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status) or DLHubError
    if cls in (ServableError, DLHubTimeoutError):
        exc = cls(message)
        exc.status = status
        exc.details = details
        return exc
    return cls(message, code=code, status=status, details=details)
