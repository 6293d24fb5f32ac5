"""Which control-plane replica is the leader: the one that runs what must run once (rollout driver, variant
builder, drift and retention jobs). Every replica serves the API and handles device messages.

PostgreSQL: the leader holds a session-level advisory lock (`pg_try_advisory_lock`) on a connection of its
own. The lock lives exactly as long as that connection's backend: a leader that is SIGKILLed, loses its
network or whose database restarts loses it as soon as PostgreSQL drops the backend (TCP keepalives
bound a silent network loss), and a follower that polls `pg_try_advisory_lock` every `interval` takes
over. Fencing: the rollout driver checks in each of its transactions that the lock is still held by
this replica's lock backend (`fence`, a read of `pg_locks`), so a leader cut off from its lock connection
writes nothing more even before its own health check notices.

A follower that handled a device message or an API call wakes the leader's rollout driver through
`NOTIFY` on its own lock connection; the leader `LISTEN`s on its own. A poll of the leader alone would
add up to one tick (1 s) to every step of a rollout that a follower saw first, i.e. to half of them.

SQLite is one process by nature: that process is always the leader.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlmodel import Session

from tinyfleet.server.config import is_sqlite_url

log = logging.getLogger(__name__)

# The advisory lock's key pair (two int4s, so pg_locks shows them as classid/objid, objsubid 2): 'tF' and
# the CRC-32 of the schema, as advisory locks are per database and two installations may share one.
LOCK_CLASS = 0x7446
WAKE_CHANNEL = "tinyfleet_wake"
NOTIFY_GAP_S = 0.05
# A silent network loss must end the backend (and free the lock) within seconds, on both sides.
_SERVER_KEEPALIVE = (
    "SET tcp_keepalives_idle = 5",
    "SET tcp_keepalives_interval = 2",
    "SET tcp_keepalives_count = 2",
)
_HOLDS_LOCK = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = :c AND objid = :o"
    " AND objsubid = 2 AND pid = :pid AND granted"
)


def libpq_url(database_url: str) -> str:
    """The SQLAlchemy URL as a libpq connection string (without the +driver part)."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class Leadership:
    def __init__(
        self,
        database_url: str,
        name: str,
        *,
        on_gain: Callable[[], None],
        on_lose: Callable[[], None],
        on_wake: Callable[[], None],
        interval: float = 1.0,
    ) -> None:
        self.name = name
        self.single = is_sqlite_url(database_url)
        self._dsn = "" if self.single else libpq_url(database_url)
        self._on_gain, self._on_lose, self._on_wake = on_gain, on_lose, on_wake
        self._interval = interval
        self._conn: Any = None  # psycopg.Connection, used by the leadership thread only
        self._pid: int | None = None  # the lock connection's backend, while leader
        self._key = 0  # the lock's second half (the schema's)
        # A replica that lost the lock lets the others take it first (its connection was the flaky one).
        self._retry_at = 0.0
        self._leader = False
        self._poke = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self.since: float | None = None  # when this replica last became leader (time.time())
        self.elections = 0
        self.last_error: str | None = None

    @property
    def is_leader(self) -> bool:
        return self._leader

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Become leader at once if the lock is free (a single replica starts driving without delay)."""
        self._stop.clear()
        self._started = True
        if self.single:
            self._gain()
            return
        self._step()
        self._thread = threading.Thread(target=self._loop, name="tinyfleet-leadership", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._poke.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None
        if self._leader:
            self._lose("stopping")
        self._close()  # ends the backend: the lock is free for another replica now
        self._started = False

    # --- used by the other parts ----------------------------------------------------------------

    def fence(self, session: Session) -> bool:
        """True when this replica may write as leader, checked inside the caller's transaction. A context
        whose background was never started (tests and tools that tick the driver themselves) may."""
        if self.single or not self._started:
            return True
        pid = self._pid
        if not self._leader or pid is None:
            return False
        held = session.execute(_HOLDS_LOCK, {"c": LOCK_CLASS, "o": self._key, "pid": pid}).scalar()
        if not held:
            log.warning("replica %s: advisory lock no longer held; the rollout engine stops here", self.name)
            self._poke.set()  # the loop notices the lost connection and stops the leader's jobs
        return bool(held)

    def wake_leader(self) -> None:
        """Something changed that the rollout driver should see now: on a follower, NOTIFY the leader."""
        if not self.single and not self._leader:
            self._poke.set()

    # --- the loop -------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self._leader:
                self._listen()
            else:
                # Woken early by a wake-up to forward (at most one NOTIFY per NOTIFY_GAP_S: a burst of
                # device messages is one wake-up); else tries the lock once per interval.
                self._poke.wait(self._interval)
                self._stop.wait(NOTIFY_GAP_S)
            if self._stop.is_set():
                break
            self._step()

    def _step(self) -> None:
        """One round: (re)connect, forward a wake-up, try the lock or check that it is still ours."""
        import psycopg

        try:
            if self._conn is None or self._conn.closed:
                if self._leader:  # the lock went with the old connection
                    self._close()
                    self._lose("lock connection lost")
                self._connect()
            if self._poke.is_set():
                self._poke.clear()
                if not self._leader:
                    self._conn.execute(f"NOTIFY {WAKE_CHANNEL}")
            if self._leader:
                self._conn.execute("SELECT 1")  # raises once the backend (and with it the lock) is gone
            elif time.monotonic() >= self._retry_at:
                got = self._conn.execute(
                    "SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, self._key)
                ).fetchone()
                if got and got[0]:
                    self._conn.execute(f"LISTEN {WAKE_CHANNEL}")
                    self._pid = self._conn.info.backend_pid
                    self._gain()
            self.last_error = None
        except psycopg.Error as exc:
            self.last_error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self._close()
            if self._leader:
                self._lose(f"lock connection lost: {self.last_error}")
            if not self._stop.is_set():
                self._stop.wait(self._interval)

    def _listen(self) -> None:
        """The leader waits for followers' wake-ups up to one interval, then the health check runs."""
        import psycopg

        try:
            for _note in self._conn.notifies(timeout=self._interval, stop_after=1):
                self._on_wake()
        except psycopg.Error:
            pass  # _step's health check sees the broken connection and steps down

    def _connect(self) -> None:
        import psycopg

        self._conn = psycopg.connect(
            self._dsn,
            autocommit=True,
            connect_timeout=5,
            application_name=f"tinyfleet {self.name}",
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=2,
        )
        for statement in _SERVER_KEEPALIVE:
            self._conn.execute(statement)
        row = self._conn.execute("SELECT current_schema()").fetchone()
        self._key = zlib.crc32(str(row[0] if row else "").encode()) & 0x7FFFFFFF  # >= 0, as pg_locks shows it

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        self._pid = None
        if conn is not None:
            with contextlib.suppress(Exception):  # closing a broken connection: nothing more to do
                conn.close()

    def _gain(self) -> None:
        self._leader = True
        self.since = time.time()
        self.elections += 1
        log.warning("replica %s is the leader: it runs the rollout engine", self.name)
        self._on_gain()

    def _lose(self, why: str) -> None:
        self._leader = False
        self._retry_at = time.monotonic() + 3 * self._interval
        self.since = None
        log.warning("replica %s is no longer the leader (%s)", self.name, why)
        self._on_lose()

    def describe(self) -> dict[str, Any]:
        """For /readyz and /metrics."""
        return {
            "replica": self.name,
            "leader": self._leader,
            "leader_since": self.since,
            "backend": "sqlite (single process)" if self.single else "postgresql advisory lock",
            "last_error": self.last_error,
        }
