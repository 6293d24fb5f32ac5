"""Database errors a device message's handling retries: the message is kept, not acknowledged."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc


class StoreUnavailable(Exception):
    """The database could not be reached: the message is kept (not acknowledged) and handled again."""


class StoreConflict(StoreUnavailable):
    """PostgreSQL broke a deadlock (or a serialization conflict) with another replica's transaction by
    rolling this one back: the database is fine, the batch is simply run again."""


# SQLSTATE of a transaction PostgreSQL rolled back to break a conflict: deadlock, serialization failure.
CONFLICT_SQLSTATES = ("40P01", "40001")


def store_error(exc: Exception) -> StoreUnavailable:
    """The StoreUnavailable (or StoreConflict) for a transient database error."""
    code = getattr(getattr(exc, "orig", None), "pgcode", None) or getattr(
        getattr(getattr(exc, "orig", None), "diag", None), "sqlstate", None
    )
    return StoreConflict(str(exc)) if code in CONFLICT_SQLSTATES else StoreUnavailable(str(exc))


# Errors of the database connection, not of the data: retrying the same message later can succeed.
TRANSIENT_DB_ERRORS = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError)
