"""Why a request was refused, free of HTTP: a stable code, a message that says what to do, and
the field at fault. The kind of refusal is the class; the API layer (shared/http_errors.py) maps
each kind to its status and the one JSON error shape, so domain and app code never speak HTTP.
"""


class Refused(Exception):
    """The request cannot be carried out as sent (bad input); the base of every refusal."""

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.field = code, message, field


class AuthenticationError(Refused):
    """No valid credentials."""


class Declined(Refused):
    """A payment provider said no (a refund it refused)."""


class Forbidden(Refused):
    """Authenticated, but not allowed: a signed link that does not check, a live key on a test-only feature."""


class NotFound(Refused):
    def __init__(
        self, resource: str, resource_id: str, *, code: str = "resource_missing", field: str | None = "id"
    ) -> None:
        super().__init__(code, f"No such {resource}: '{resource_id}'", field=field)


class Conflict(Refused):
    """The resource's state (or a concurrent change) does not allow this now."""


class Gone(Refused):
    """It existed, and is no longer usable (an expired link)."""
