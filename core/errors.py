"""The archiver's own exception tree; entry points map these to HTTP statuses and exit codes."""


class ArchiverError(Exception):
    """Base of every error the archiver raises on purpose."""

    exit_code = 1


class ConfigError(ArchiverError):
    """A setting is missing or invalid."""

    exit_code = 2


class NotFoundError(ArchiverError):
    """A named thing (account, delivery) does not exist."""

    exit_code = 3


class ConflictError(ArchiverError):
    """A thing that must be unique exists already."""

    exit_code = 4


class StoreUnavailable(ArchiverError):
    """The database (or Redis) cannot be reached right now; try again later."""

    exit_code = 5


class MetaRefused(ArchiverError):
    """Meta refused a call for good (token expired or invalid, permission, bad request)."""

    exit_code = 6


class MetaUnavailable(ArchiverError):
    """Meta throttled the account or failed for now; the same command works later."""

    exit_code = 7
