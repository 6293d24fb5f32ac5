"""Telemetry: validation of device reports (PROTOCOL 4.5), batched storage, queries over time windows."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import JSON, Boolean, Column, Float, Integer
from sqlmodel import Session, col, select

from tinyfleet.server.models import Device, TelemetryReport
from tinyfleet.server.services import registry, rollups

MAX_REPORTS_PER_MESSAGE = 100
MAX_HISTOGRAM = 256
MAX_NUMBER = 2**53  # the largest integer every JSON parser keeps exactly
MAX_SEQ = 2**32 - 1  # boot and seq are u32 on a device
# Plausibility bounds (one device must not be able to skew fleet figures, issue 11 item 8):
MAX_INFERENCE_HZ = 10_000  # faster than any model a microcontroller runs
FIRST_INTERVAL_S = 3600.0  # what a device's first report since the server started may cover
MAX_CLOCK_AHEAD_S = 300.0  # a report stamped further ahead of the server's clock is refused
MAX_LATENCY_US = 600e6
# Per-device token bucket over reports: sustained rate and burst. The burst absorbs a device's backlog
# after it was offline (the simulator reports every 10 s by default).
RATE_REPORTS_PER_S = 2.0
RATE_BURST = 120.0


class Rejected(ValueError):
    """A well-formed report the server refuses (wrong model, implausible values); `reason` is counted."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class DeviceTrack:
    """What the gateway remembers of one device's telemetry (in memory; starts over with the server)."""

    tokens: float = RATE_BURST
    refilled_at: float | None = None
    last_ts: float | None = None
    last_seq: dict[int, int] = field(default_factory=dict)  # boot -> highest seq seen

    def take(self, n: int, now: float) -> bool:
        if self.refilled_at is not None:
            self.tokens = min(RATE_BURST, self.tokens + (now - self.refilled_at) * RATE_REPORTS_PER_S)
        self.refilled_at = now
        if n > self.tokens:
            return False
        self.tokens -= n
        return True

    def gap(self, boot: int, seq: int) -> int:
        """Reports missing before this one (0 for the next, a duplicate or the first seen)."""
        last = self.last_seq.get(boot)
        if last is None or seq <= last:
            self.last_seq.setdefault(boot, seq)
            return 0
        self.last_seq[boot] = seq
        return seq - last - 1


def check_plausible(rows: Sequence[AnyReport], active_sha: str | None, track: DeviceTrack) -> None:
    """Rejected unless every report is for the model the device reports active and its counts fit the
    time it covers (since the device's previous report by its own clock, which cannot run ahead of ours
    by more than MAX_CLOCK_AHEAD_S, so a device cannot claim more than MAX_INFERENCE_HZ overall)."""
    last_ts = track.last_ts
    for r in rows:
        if r.model_sha256 != active_sha:
            raise Rejected("wrong_model", f"report for {r.model_sha256[:12]}, device runs {active_sha}")
        if r.ts > r.received_at + MAX_CLOCK_AHEAD_S:
            raise Rejected("out_of_range", "ts is ahead of the server's clock")
        interval = FIRST_INTERVAL_S if last_ts is None else max(1.0, r.ts - last_ts)
        last_ts = r.ts if last_ts is None else max(last_ts, r.ts)
        if r.inference_count > MAX_INFERENCE_HZ * interval:
            raise Rejected("out_of_range", f"{r.inference_count} inferences in {interval:.0f} s")
        if not 0.0 <= r.confidence_mean <= 1.0:
            raise Rejected("out_of_range", "confidence_mean must be in 0..1")
        if r.errors > r.inference_count or sum(r.class_histogram) > r.inference_count:
            raise Rejected("out_of_range", "errors and class_histogram must not exceed inference_count")
        if r.latency_us_mean > MAX_LATENCY_US:
            raise Rejected("out_of_range", "latency_us_mean above 600 s")
    track.last_ts = last_ts


def admit(rows: Sequence[AnyReport], active_sha: str | None, track: DeviceTrack, now: float) -> int:
    """Rejected unless one message's reports are plausible (check_plausible) and within the device's
    rate; returns how many reports are missing before them (seq gaps). Updates the device's track."""
    check_plausible(rows, active_sha, track)
    if not track.take(len(rows), now):
        raise Rejected("rate_limited", f"above {RATE_REPORTS_PER_S:g} reports/s")
    return sum(track.gap(r.boot or 0, r.seq) for r in rows if r.seq is not None)


def _num(report: dict[str, Any], key: str, *, integer: bool = False, minimum: float = 0) -> Any:
    value = report.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number")
    if integer and not isinstance(value, int):
        raise ValueError(f"{key} must be an integer")
    if not math.isfinite(value) or not minimum <= value <= MAX_NUMBER:
        raise ValueError(f"{key} must be finite and in {minimum}..2^53")
    return value


@dataclass(slots=True)
class ReportRow:
    """A parsed report, the fields of a TelemetryReport row: a plain object, as building ORM objects
    cost more than all the rest of ingest (bench/gateway_telemetry.py)."""

    device_id: str
    ts: float
    received_at: float
    model_sha256: str
    inference_count: int
    latency_us_mean: float
    latency_estimated: bool
    class_histogram: list[int]
    confidence_mean: float
    errors: int
    arena_bytes: int
    boot: int | None
    seq: int | None


AnyReport = TelemetryReport | ReportRow
_R = TypeVar("_R", TelemetryReport, ReportRow)
_HEX = "0123456789abcdef"


def parse_reports(device_id: str, msg: Any, received_at: float) -> list[TelemetryReport]:
    """parse_rows as TelemetryReport objects."""
    return [
        TelemetryReport(**{f: getattr(r, f) for f in ReportRow.__slots__})
        for r in parse_rows(device_id, msg, received_at)
    ]


def parse_rows(device_id: str, msg: Any, received_at: float) -> list[ReportRow]:
    """Rows for one telemetry message, or ValueError naming the first bad field (the whole message is
    refused: a device that sends garbage in one field cannot be trusted for the others)."""
    if not isinstance(msg, dict) or not isinstance(msg.get("reports"), list):
        raise ValueError("telemetry needs a 'reports' list")
    reports = msg["reports"]
    if len(reports) > MAX_REPORTS_PER_MESSAGE:
        raise ValueError(f"at most {MAX_REPORTS_PER_MESSAGE} reports per message")
    rows = []
    for r in reports:
        if not isinstance(r, dict):
            raise ValueError("each report must be an object")
        sha = r.get("model_sha256")
        if not isinstance(sha, str) or len(sha) != 64 or sha.strip(_HEX):
            raise ValueError("model_sha256 must be 64 lowercase hex digits")
        hist = r.get("class_histogram", [])
        if (
            not isinstance(hist, list)
            or len(hist) > MAX_HISTOGRAM
            or not all(isinstance(h, int) and not isinstance(h, bool) and 0 <= h <= MAX_NUMBER for h in hist)
        ):
            raise ValueError(f"class_histogram must be at most {MAX_HISTOGRAM} non-negative integers")
        estimated = r.get("latency_estimated", False)
        if not isinstance(estimated, bool):
            raise ValueError("latency_estimated must be a boolean")
        seq = r.get("seq")  # optional (older devices): the server then cannot drop duplicates
        boot = r.get("boot", 0)
        for name, v in (("seq", seq), ("boot", boot)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_SEQ):
                raise ValueError(f"{name} must be an integer in 0..2^32-1")
        rows.append(
            ReportRow(
                device_id=device_id,
                ts=float(_num(r, "ts")),
                received_at=received_at,
                model_sha256=sha,
                inference_count=_num(r, "inference_count", integer=True),
                latency_us_mean=float(_num(r, "latency_us_mean")),
                latency_estimated=estimated,
                class_histogram=hist,
                confidence_mean=float(_num(r, "confidence_mean")),
                errors=_num(r, "errors", integer=True),
                arena_bytes=_num(r, "arena_bytes", integer=True),
                boot=boot if seq is not None else None,
                seq=seq,
            )
        )
    return rows


def store(session: Session, rows: Sequence[TelemetryReport]) -> int:
    """store_batch for callers that want the number of duplicates dropped."""
    return len(rows) - len(store_batch(session, rows))


# The columns a report is inserted with (the id comes from the database), and rows per SQLite INSERT
# (13 parameters a row, within SQLite's 32,766 parameters a statement).
_COLUMNS = tuple(c.name for c in TelemetryReport.__table__.columns if c.name != "id")  # type: ignore[attr-defined]
_INSERT_ROWS = 500
_HIST = "class_histogram"


def store_batch(session: Session, rows: Sequence[_R]) -> list[_R]:
    """Store the rows not stored yet and add them to their rollups, in the caller's transaction; returns
    the rows stored. A report with a seq is stored once per (device, boot, seq), however often it is
    delivered: duplicates inside the batch are dropped here, those already stored by the unique index.
    INSERT ... ON CONFLICT DO NOTHING RETURNING of many rows (PostgreSQL: one statement whose one
    parameter is the batch as JSON, unpacked by json_to_recordset; SQLite: multi-row VALUES), so that the
    rollups count exactly the rows the database kept. Sent as driver SQL: SQLAlchemy's per-parameter
    processing (and psycopg's, of thousands of parameters) cost more than the database's work."""
    fresh: list[_R] = []
    seen: set[tuple[str, int | None, int]] = set()
    for r in rows:
        if r.seq is not None:
            key = (r.device_id, r.boot, r.seq)
            if key in seen:
                continue
            seen.add(key)
        fresh.append(r)
    if not fresh:
        return []
    conn = session.connection()
    dialect = conn.dialect.name
    inserted: set[tuple[str, int, int]] = set()
    if dialect == "postgresql":
        # One statement, one parameter: the rows as JSON (encoded in C), unpacked by json_to_recordset.
        doc = json.dumps([{c: getattr(r, c) for c in _COLUMNS} for r in fresh])
        inserted.update((d, b, s) for d, b, s in conn.exec_driver_sql(_PG_INSERT, (doc,)))
    elif dialect == "sqlite":
        for i in range(0, len(fresh), _INSERT_ROWS):
            chunk = fresh[i : i + _INSERT_ROWS]
            params = tuple(_param(r, c) for r in chunk for c in _COLUMNS)
            inserted.update((d, b, s) for d, b, s in conn.exec_driver_sql(_sqlite_insert(len(chunk)), params))
    else:
        raise ValueError(f"telemetry storage supports PostgreSQL and SQLite, not {dialect}")
    stored = [r for r in fresh if r.seq is None or (r.device_id, r.boot, r.seq) in inserted]
    rollups.add(session, stored)  # same transaction: the rollups count exactly the rows stored
    return stored


def _param(r: AnyReport, column: str) -> Any:
    # class_histogram as SQLAlchemy's JSON type stores it: JSON text, on both databases
    return json.dumps(r.class_histogram) if column == _HIST else getattr(r, column)


_CONFLICT = " ON CONFLICT (device_id, boot, seq) DO NOTHING RETURNING device_id, boot, seq"


def _pg_type(column: Column[Any]) -> str:
    if isinstance(column.type, JSON):
        return "json"
    if isinstance(column.type, Boolean):
        return "bool"
    if isinstance(column.type, Integer):
        return "int8"
    return "float8" if isinstance(column.type, Float) else "text"


def _pg_insert() -> str:
    table = TelemetryReport.__table__  # type: ignore[attr-defined]
    record = ",".join(f"{c} {_pg_type(table.c[c])}" for c in _COLUMNS)
    columns = ",".join(_COLUMNS)
    return (
        f"INSERT INTO {table.name} ({columns}) SELECT {columns}"
        f" FROM json_to_recordset(%s::json) AS t({record})" + _CONFLICT
    )


_PG_INSERT = _pg_insert()


@functools.lru_cache(maxsize=4)
def _sqlite_insert(n_rows: int) -> str:
    row = "(" + ",".join("?" * len(_COLUMNS)) + ")"
    values = ",".join([row] * n_rows)
    return f"INSERT INTO {TelemetryReport.__tablename__} ({','.join(_COLUMNS)}) VALUES {values}" + _CONFLICT


def active_models(session: Session, device_ids: set[str]) -> dict[str, str | None]:
    """Each known device's active model digest (one query; unknown ids are left out)."""
    conn = session.connection()
    ids = sorted(device_ids)
    param: Any = ids
    if conn.dialect.name == "postgresql":
        where = "id = ANY(%s)"
    else:
        where, param = "id IN (SELECT value FROM json_each(?))", json.dumps(ids)
    sql = f"SELECT id, active_model_sha256 FROM {Device.__tablename__} WHERE {where}"
    return {device_id: sha for device_id, sha in conn.exec_driver_sql(sql, (param,))}


def shas_of_version(session: Session, model_version_id: int) -> set[str]:
    registry.get_version(session, model_version_id)
    return {p.model_sha256 for p in registry.packages_of_version(session, model_version_id)}


def query(
    session: Session,
    *,
    device_id: str | None = None,
    model_version_id: int | None = None,
    since: float | None = None,
    until: float | None = None,
    limit: int = 1000,
) -> list[TelemetryReport]:
    stmt = select(TelemetryReport)
    if device_id is not None:
        stmt = stmt.where(TelemetryReport.device_id == device_id)
    if model_version_id is not None:
        stmt = stmt.where(col(TelemetryReport.model_sha256).in_(shas_of_version(session, model_version_id)))
    if since is not None:
        stmt = stmt.where(TelemetryReport.ts >= since)
    if until is not None:
        stmt = stmt.where(TelemetryReport.ts < until)
    stmt = stmt.order_by(col(TelemetryReport.ts).desc(), col(TelemetryReport.id).desc()).limit(limit)
    return list(session.exec(stmt))


def summarize(rows: list[TelemetryReport], since: float | None, until: float | None) -> dict[str, Any]:
    total = sum(r.inference_count for r in rows)
    hist: list[int] = []
    for r in rows:
        if len(r.class_histogram) > len(hist):
            hist += [0] * (len(r.class_histogram) - len(hist))
        for i, v in enumerate(r.class_histogram):
            hist[i] += v

    def weighted(attr: str) -> float | None:
        if total == 0:
            return None
        return float(sum(getattr(r, attr) * r.inference_count for r in rows)) / total

    return {
        "reports": len(rows),
        "devices": len({r.device_id for r in rows}),
        "inference_count": total,
        "errors": sum(r.errors for r in rows),
        "latency_us_mean": weighted("latency_us_mean"),
        "confidence_mean": weighted("confidence_mean"),
        "class_histogram": hist,
        # Any estimated figure makes the mean an estimate (host-simulated devices, PROTOCOL 4.5).
        "latency_estimated": any(r.latency_estimated for r in rows) if rows else None,
        "arena_bytes_max": max((r.arena_bytes for r in rows), default=None),
        "since": since,
        "until": until,
    }
