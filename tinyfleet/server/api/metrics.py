"""GET /metrics: Prometheus text format, computed on each scrape from the database and the gateway's
counters (a custom Collector on a registry of this app's own, so apps never share metrics).

Protected by the API token like /api unless TINYFLEET_METRICS_PUBLIC=1.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlmodel import Session, col, select

from tinyfleet.server.api.deps import get_ctx, require_token
from tinyfleet.server.context import AppContext
from tinyfleet.server.models import Device, Model, ModelVersion, Package, Rollout, TelemetryReport

router = APIRouter(tags=["health"])
_bearer = HTTPBearer(auto_error=False, description="TINYFLEET_API_TOKEN (unless TINYFLEET_METRICS_PUBLIC=1)")


class FleetCollector(Collector):
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        with Session(self.ctx.db) as session:
            yield from self._database(session)
        yield from self._gateway()

    def _database(self, session: Session) -> Iterator[Metric]:
        # digest -> (model, version): the newest version whose package carries it
        names: dict[str, tuple[str, str]] = {}
        stmt = (
            select(Package.model_sha256, Model.name, ModelVersion.version)
            .join(ModelVersion, col(ModelVersion.id) == Package.model_version_id)
            .join(Model, col(Model.id) == ModelVersion.model_id)
            .order_by(col(ModelVersion.id))
        )
        for digest, name, number in session.exec(stmt):
            names[digest] = (name, number)
        devices = GaugeMetricFamily(
            "tinyfleet_devices",
            "Devices by active model version (model and version empty: none, unknown: not in the registry)"
            " and state",
            labels=["model", "version", "state"],
        )
        counts: dict[tuple[str, str, str], int] = {}
        stmt_d = select(Device.active_model_sha256, Device.online, func.count()).group_by(
            col(Device.active_model_sha256), col(Device.online)
        )
        for active, online, n in session.exec(stmt_d):
            model, version = ("", "") if active is None else names.get(active, ("unknown", "unknown"))
            key = (model, version, "online" if online else "offline")
            counts[key] = counts.get(key, 0) + n
        for key, n in sorted(counts.items()):
            devices.add_metric(list(key), n)
        yield devices
        rollouts = GaugeMetricFamily("tinyfleet_rollouts", "Rollouts by state", labels=["state"])
        stmt_r = select(Rollout.state, func.count()).group_by(col(Rollout.state))
        for state, n in sorted(session.exec(stmt_r)):
            rollouts.add_metric([state], n)
        yield rollouts
        newest = session.exec(select(func.max(TelemetryReport.ts))).one()
        if newest is not None:
            # by the reports' own time (indexed); devices' clocks may run up to 5 min ahead
            yield GaugeMetricFamily(
                "tinyfleet_telemetry_ingest_lag_seconds",
                "Now minus the time of the newest stored telemetry report",
                value=time.time() - newest,
            )

    def _gateway(self) -> Iterator[Metric]:
        ctx = self.ctx
        snap = ctx.stats.snapshot()
        events = snap["events"]

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, value=value)

        yield counter(
            "tinyfleet_telemetry_messages_received",
            "Telemetry messages received",
            snap["received"].get("telemetry", 0),
        )
        yield counter(
            "tinyfleet_telemetry_reports_stored", "Telemetry reports stored", events.get("telemetry_rows", 0)
        )
        yield counter(
            "tinyfleet_telemetry_duplicates",
            "Redelivered telemetry reports dropped (same device, boot and seq)",
            events.get("telemetry_duplicates", 0),
        )
        rejected = CounterMetricFamily(
            "tinyfleet_telemetry_rejected",
            "Telemetry refused, by reason: reports (wrong_model, out_of_range, rate_limited, db_refused)"
            " or messages (malformed)",
            labels=["reason"],
        )
        for reason, n in sorted(snap["rejected"].items()):
            rejected.add_metric([reason], n)
        rejected.add_metric(["malformed"], snap["malformed"].get("telemetry", 0))
        rejected.add_metric(["db_refused"], events.get("telemetry_refused_by_db", 0))
        yield rejected
        yield counter(
            "tinyfleet_db_retries",
            "Device messages retried while the database was unreachable",
            events.get("db_retries", 0),
        )
        ingest = ctx.telemetry_ingest
        yield GaugeMetricFamily(
            "tinyfleet_telemetry_queue_depth",
            "Telemetry messages queued for, or being written by, the batching writer",
            value=ingest.depth,
        )
        yield GaugeMetricFamily(
            "tinyfleet_telemetry_queue_capacity", "Bound of that queue", value=ingest.queue_max
        )
        yield counter(
            "tinyfleet_telemetry_batches", "Telemetry batches stored", events.get("telemetry_batches", 0)
        )
        received = CounterMetricFamily(
            "tinyfleet_mqtt_messages_received", "Device messages by kind", labels=["kind"]
        )
        for kind, n in sorted(snap["received"].items()):
            received.add_metric([kind], n)
        yield received
        malformed = CounterMetricFamily(
            "tinyfleet_mqtt_messages_malformed",
            "Device messages breaking the protocol, by kind",
            labels=["kind"],
        )
        for kind, n in sorted(snap["malformed"].items()):
            malformed.add_metric([kind], n)
        yield malformed
        gateway = CounterMetricFamily("tinyfleet_gateway_events", "Other gateway events", labels=["event"])
        for event, n in sorted(events.items()):
            gateway.add_metric([event], n)
        yield gateway
        connected = bool(ctx.gateway and ctx.gateway.connected.is_set())
        yield GaugeMetricFamily(
            "tinyfleet_mqtt_connected", "1 while the gateway is connected to the broker", value=int(connected)
        )
        yield counter("tinyfleet_rollout_driver_ticks", "Rollout driver ticks", ctx.rollout_driver.ticks)
        leader = GaugeMetricFamily(
            "tinyfleet_leader",
            "1 while this replica runs the rollout engine (holds the leader lock)",
            labels=["replica"],
        )
        leader.add_metric([ctx.leadership.name], int(ctx.leadership.is_leader))
        yield leader


def metrics_auth(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    if not get_ctx(request).settings.metrics_public:
        require_token(request, creds)


def _registry(request: Request) -> CollectorRegistry:
    registry: CollectorRegistry | None = getattr(request.app.state, "metrics_registry", None)
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(FleetCollector(get_ctx(request)))
        request.app.state.metrics_registry = registry
    return registry


@router.get(
    "/metrics",
    dependencies=[Depends(metrics_auth)],
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
        401: {"description": "missing or wrong API token (unless TINYFLEET_METRICS_PUBLIC=1)"},
    },
)
def metrics(request: Request) -> Response:
    """Fleet, rollout, telemetry-ingest and gateway metrics in Prometheus text format."""
    return Response(generate_latest(_registry(request)), media_type=CONTENT_TYPE_LATEST)
