"""Telemetry: validation of device reports (PROTOCOL 4.5), batched storage, queries over time windows."""

from __future__ import annotations

import math
from typing import Any

from sqlmodel import Session, col, select

from tinyfleet.server.models import TelemetryReport
from tinyfleet.server.services import registry

MAX_REPORTS_PER_MESSAGE = 100
MAX_HISTOGRAM = 256
MAX_NUMBER = 2**53  # the largest integer every JSON parser keeps exactly


def _num(report: dict[str, Any], key: str, *, integer: bool = False, minimum: float = 0) -> Any:
    value = report.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number")
    if integer and not isinstance(value, int):
        raise ValueError(f"{key} must be an integer")
    if not math.isfinite(value) or not minimum <= value <= MAX_NUMBER:
        raise ValueError(f"{key} must be finite and in {minimum}..2^53")
    return value


def parse_reports(device_id: str, msg: Any, received_at: float) -> list[TelemetryReport]:
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
        if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
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
        rows.append(
            TelemetryReport(
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
            )
        )
    return rows


def store(session: Session, rows: list[TelemetryReport]) -> None:
    session.add_all(rows)


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
