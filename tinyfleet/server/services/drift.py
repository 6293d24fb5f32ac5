"""Drift alarms: a model version in steady state whose recent telemetry no longer looks like its own
telemetry right after its rollout.

Steady state: the version's latest rollout is completed (none of it is running, paused or rolling
back). Its baseline is the first window of `window` seconds after that rollout finished; the recent
window is the last `window` seconds, checked once it no longer overlaps the baseline. Two alert kinds:
class_drift (Jensen-Shannon divergence of the class distributions above `class_jsd_max`) and
confidence_drop (mean top-1 confidence down by more than `confidence_max_drop`). Each needs
`min_inferences` in both windows (classified ones for the distribution); with fewer, or out of steady
state, an alert stays as it is. Within the thresholds again, an open alert is resolved.

The periodic `DriftJob` is the only writer of alerts, so finding the open alert and then updating it
needs no lock.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from tinyfleet.server.canary.stats import jensen_shannon
from tinyfleet.server.config import Settings
from tinyfleet.server.db import session_scope
from tinyfleet.server.models import Alert, Rollout
from tinyfleet.server.services import alerts
from tinyfleet.server.services.periodic import PeriodicJob
from tinyfleet.server.services.rollups import Stats
from tinyfleet.server.services.telemetry_stats import window_stats

log = logging.getLogger(__name__)

KINDS = ("class_drift", "confidence_drop")


@dataclass(frozen=True)
class DriftConfig:
    window: float = 600.0
    min_inferences: int = 1000
    class_jsd_max: float = 0.05
    confidence_max_drop: float = 0.05

    @classmethod
    def from_settings(cls, s: Settings) -> DriftConfig:
        return cls(
            s.drift_window_seconds, s.drift_min_inferences, s.drift_class_jsd_max, s.drift_confidence_max_drop
        )


def steady_versions(session: Session, now: float, window: float) -> dict[int, float]:
    """model_version_id -> when its latest rollout completed, for versions whose latest rollout is
    completed and whose recent window no longer overlaps the baseline."""
    latest = select(Rollout.model_version_id, func.max(Rollout.id).label("rid")).group_by(
        col(Rollout.model_version_id)
    )
    ids = [rid for _v, rid in session.exec(latest)]
    out: dict[int, float] = {}
    if not ids:
        return out
    for r in session.exec(select(Rollout).where(col(Rollout.id).in_(ids))):
        if r.state == "completed" and r.finished_at is not None and now - window >= r.finished_at + window:
            out[r.model_version_id] = r.finished_at
    return out


def measure(kind: str, base: Stats, recent: Stats, cfg: DriftConfig) -> dict[str, Any] | None:
    """The figures of one check, with "firing"; None when either window holds too few samples."""
    if kind == "class_drift":
        n_b, n_r = sum(base.class_histogram), sum(recent.class_histogram)
        if min(n_b, n_r) < cfg.min_inferences:
            return None
        jsd = jensen_shannon(recent.class_histogram, base.class_histogram)
        return {
            "value": jsd,
            "threshold": cfg.class_jsd_max,
            "firing": jsd > cfg.class_jsd_max,
            "baseline_samples": n_b,
            "recent_samples": n_r,
            "baseline_distribution": base.class_distribution,
            "recent_distribution": recent.class_distribution,
        }
    n_b, n_r = base.inference_count, recent.inference_count
    if min(n_b, n_r) < cfg.min_inferences or base.confidence_mean is None or recent.confidence_mean is None:
        return None
    drop = base.confidence_mean - recent.confidence_mean
    return {
        "value": drop,
        "threshold": cfg.confidence_max_drop,
        "firing": drop > cfg.confidence_max_drop,
        "baseline": base.confidence_mean,
        "recent": recent.confidence_mean,
        "baseline_samples": n_b,
        "recent_samples": n_r,
    }


def _message(kind: str, version_id: int, m: dict[str, Any]) -> str:
    if kind == "class_drift":
        return (
            f"model version {version_id}: class distribution JSD {m['value']:.4f} from its baseline"
            f" (max {m['threshold']:.4f})"
        )
    return (
        f"model version {version_id}: mean confidence {m['recent']:.3f} vs baseline {m['baseline']:.3f}"
        f" (max drop {m['threshold']:.3f})"
    )


def check_drift(
    session: Session,
    now: float,
    cfg: DriftConfig | None = None,
    notifier: alerts.WebhookNotifier | None = None,
) -> list[tuple[str, Alert]]:
    """Check every steady version once, in the caller's transaction; returns what changed as
    ("opened" | "updated" | "resolved", alert). Webhooks are sent after the commit."""
    cfg = cfg or DriftConfig()
    changes: list[tuple[str, Alert]] = []
    for version_id, finished in sorted(steady_versions(session, now, cfg.window).items()):
        base, bw = window_stats(session, finished, finished + cfg.window, model_version_id=version_id)
        recent, rw = window_stats(session, now - cfg.window, now, model_version_id=version_id)
        windows = {"baseline_window": [bw.since, bw.until], "recent_window": [rw.since, rw.until]}
        for kind in KINDS:
            m = measure(kind, base, recent, cfg)
            if m is None:
                continue
            firing = m.pop("firing")
            numbers = {**m, **windows}
            alert = alerts.open_alert(session, kind, version_id)
            if firing:
                message = _message(kind, version_id, m)
                if alert is None:
                    alert = Alert(
                        kind=kind,
                        model_version_id=version_id,
                        state="open",
                        opened_at=now,
                        last_seen_at=now,
                        numbers=numbers,
                        message=message,
                    )
                    session.add(alert)
                    alerts.notify(session, notifier, "opened", alert)
                    changes.append(("opened", alert))
                    log.warning("alert opened: %s", message)
                else:
                    alert.last_seen_at, alert.numbers, alert.message = now, numbers, message
                    session.add(alert)
                    changes.append(("updated", alert))
            elif alert is not None:
                alert.state, alert.resolved_at, alert.numbers = "resolved", now, numbers
                session.add(alert)
                alerts.notify(session, notifier, "resolved", alert)
                changes.append(("resolved", alert))
                log.info("alert %s resolved: %s back within threshold", alert.id, kind)
    return changes


class DriftJob(PeriodicJob):
    """Runs `check_drift` every `interval` seconds on its own thread (0: never); owns the notifier."""

    name = "drift-alarms"

    def __init__(self, db: Engine, settings: Settings) -> None:
        super().__init__(settings.drift_check_seconds)
        self._db = db
        self.config = DriftConfig.from_settings(settings)
        self.notifier = alerts.WebhookNotifier(settings.alert_webhooks, settings.alert_webhook_attempts)

    def run_once(self, now: float | None = None) -> list[tuple[str, Alert]]:
        with session_scope(self._db) as s:
            return check_drift(s, time.time() if now is None else now, self.config, self.notifier)

    def stop(self) -> None:
        super().stop()
        self.notifier.stop()
