"""Telemetry rolled up per minute and model digest, and the retention of raw reports and rollups.

The rollups are updated in the transaction that stores the raw reports (`add`, called by
telemetry.store_batch with the rows it keeps), not by a periodic job: they then hold exactly what was stored,
a redelivered report that de-duplication drops never reaches them, and a per-version series is current
the moment its reports are. One thread writes telemetry (the ingest writer, services/telemetry_ingest.py),
so read-then-update is race-free.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, tuple_
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tinyfleet.server.db import session_scope
from tinyfleet.server.models import TelemetryReport, TelemetryRollup
from tinyfleet.server.services.periodic import PeriodicJob

if TYPE_CHECKING:  # telemetry imports this module
    from tinyfleet.server.services.telemetry import ReportRow

log = logging.getLogger(__name__)

MINUTE = 60
PRUNE_BATCH = 10_000  # rows deleted per transaction, so that the gateway never waits long for the lock


@dataclass
class Stats:
    """Additive telemetry aggregate: any set of reports or rollups, summed. Means are inference-weighted."""

    reports: int = 0
    inference_count: int = 0
    errors: int = 0
    latency_us_sum: float = 0.0
    confidence_sum: float = 0.0
    latency_estimated: bool = False
    class_histogram: list[int] = field(default_factory=list)

    def _add_hist(self, hist: Iterable[int]) -> None:
        for i, v in enumerate(hist):
            if i == len(self.class_histogram):
                self.class_histogram.append(0)
            self.class_histogram[i] += v

    def add_report(self, r: TelemetryReport | ReportRow) -> None:
        self.reports += 1
        self.inference_count += r.inference_count
        self.errors += r.errors
        self.latency_us_sum += r.latency_us_mean * r.inference_count
        self.confidence_sum += r.confidence_mean * r.inference_count
        self.latency_estimated = self.latency_estimated or r.latency_estimated
        self._add_hist(r.class_histogram)

    def add_rollup(self, r: TelemetryRollup) -> None:
        self.reports += r.reports
        self.inference_count += r.inference_count
        self.errors += r.errors
        self.latency_us_sum += r.latency_us_sum
        self.confidence_sum += r.confidence_sum
        self.latency_estimated = self.latency_estimated or r.latency_estimated
        self._add_hist(r.class_histogram)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.inference_count if self.inference_count else None

    @property
    def latency_us_mean(self) -> float | None:
        return self.latency_us_sum / self.inference_count if self.inference_count else None

    @property
    def confidence_mean(self) -> float | None:
        return self.confidence_sum / self.inference_count if self.inference_count else None

    @property
    def class_distribution(self) -> list[float]:
        """Each class's share of the classified inferences ([] when none were classified)."""
        total = sum(self.class_histogram)
        return [v / total for v in self.class_histogram] if total else []

    def as_dict(self) -> dict[str, Any]:
        return {
            "reports": self.reports,
            "inference_count": self.inference_count,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "latency_us_mean": self.latency_us_mean,
            "latency_estimated": self.latency_estimated if self.reports else None,
            "confidence_mean": self.confidence_mean,
            "class_histogram": list(self.class_histogram),
            "class_distribution": self.class_distribution,
        }


def minute_of(ts: float) -> int:
    return math.floor(ts / MINUTE) * MINUTE


def add(session: Session, rows: Sequence[TelemetryReport | ReportRow]) -> None:
    """Add stored reports to their (minute, digest) rollups, in the caller's transaction (a whole batch
    at once: summed in memory first, then one read and one write per rollup touched)."""
    sums: dict[tuple[int, str], Stats] = {}
    for r in rows:
        sums.setdefault((minute_of(r.ts), r.model_sha256), Stats()).add_report(r)
    if not sums:
        return
    # Replicas store telemetry side by side (issue 16): the rollups touched are created if missing, then
    # read locked (FOR UPDATE; SQLite's write lock is taken up front), so that two batches add up instead
    # of one overwriting the other. In key order, so that two batches never wait for each other in a cycle.
    _create_missing(session, sorted(sums))
    keys = tuple_(col(TelemetryRollup.minute), col(TelemetryRollup.model_sha256))
    found = session.exec(
        select(TelemetryRollup)
        .where(keys.in_(sums))
        .order_by(col(TelemetryRollup.minute), col(TelemetryRollup.model_sha256))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    existing = {(r.minute, r.model_sha256): r for r in found}
    for (minute, sha), s in sums.items():
        row = existing[(minute, sha)]
        merged = Stats()
        merged.add_rollup(row)
        merged.add_rollup(_as_rollup(s))
        row.reports, row.inference_count, row.errors = merged.reports, merged.inference_count, merged.errors
        row.latency_us_sum, row.confidence_sum = merged.latency_us_sum, merged.confidence_sum
        row.latency_estimated = merged.latency_estimated
        row.class_histogram = merged.class_histogram  # a new list: SQLAlchemy sees the JSON change
        session.add(row)


def _create_missing(session: Session, keys: list[tuple[int, str]]) -> None:
    table: Any = TelemetryRollup.__table__  # type: ignore[attr-defined]
    from sqlalchemy.dialects import postgresql, sqlite

    postgres = session.get_bind().dialect.name == "postgresql"
    insert: Any = postgresql.insert if postgres else sqlite.insert
    empty = {
        "reports": 0,
        "inference_count": 0,
        "errors": 0,
        "latency_us_sum": 0.0,
        "confidence_sum": 0.0,
        "latency_estimated": False,
        "class_histogram": [],
    }
    rows = [{"minute": minute, "model_sha256": sha, **empty} for minute, sha in keys]
    session.execute(
        insert(table).values(rows).on_conflict_do_nothing(index_elements=["minute", "model_sha256"])
    )


def _as_rollup(s: Stats) -> TelemetryRollup:
    return TelemetryRollup(
        minute=0,
        model_sha256="",
        reports=s.reports,
        inference_count=s.inference_count,
        errors=s.errors,
        latency_us_sum=s.latency_us_sum,
        confidence_sum=s.confidence_sum,
        latency_estimated=s.latency_estimated,
        class_histogram=s.class_histogram,
    )


def rollups(session: Session, shas: set[str], start: int, end: int) -> list[TelemetryRollup]:
    """The rollups of these digests with minute in [start, end), oldest first."""
    if not shas:
        return []
    stmt = (
        select(TelemetryRollup)
        .where(col(TelemetryRollup.model_sha256).in_(shas))
        .where(TelemetryRollup.minute >= start, TelemetryRollup.minute < end)
        .order_by(col(TelemetryRollup.minute))
    )
    return list(session.exec(stmt))


# --- retention ----------------------------------------------------------------------------------------


def prune(db: Engine, now: float, raw_retention: float, rollup_retention: float) -> tuple[int, int]:
    """Delete raw reports older than `raw_retention` seconds (by report time) and rollups older than
    `rollup_retention`; 0 keeps them forever. In batches of PRUNE_BATCH rows, one transaction each.
    Returns (raw rows, rollups) deleted."""
    raw = rolled = 0
    if raw_retention > 0:
        cut = now - raw_retention
        while True:
            with session_scope(db) as s:
                ids = select(TelemetryReport.id).where(TelemetryReport.ts < cut).limit(PRUNE_BATCH)
                n = s.exec(delete(TelemetryReport).where(col(TelemetryReport.id).in_(ids))).rowcount
            raw += n
            if n < PRUNE_BATCH:
                break
    if rollup_retention > 0:
        with session_scope(db) as s:
            cut_minute = minute_of(now - rollup_retention)
            stmt = delete(TelemetryRollup).where(col(TelemetryRollup.minute) < cut_minute)
            rolled = s.exec(stmt).rowcount
    return raw, rolled


class RetentionJob(PeriodicJob):
    """Runs `prune` every `interval` seconds on its own thread (started and stopped with the app)."""

    name = "telemetry-retention"

    def __init__(self, db: Engine, raw_retention: float, rollup_retention: float, interval: float) -> None:
        super().__init__(interval)
        self._db = db
        self._raw, self._rollup = raw_retention, rollup_retention
        self.runs = 0

    @property
    def enabled(self) -> bool:
        return self._interval > 0 and (self._raw > 0 or self._rollup > 0)

    def run_once(self, now: float | None = None) -> tuple[int, int]:
        deleted = prune(self._db, time.time() if now is None else now, self._raw, self._rollup)
        self.runs += 1
        if any(deleted):
            log.info("telemetry retention: deleted %d raw reports and %d rollups", *deleted)
        return deleted
