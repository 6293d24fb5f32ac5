"""User journey through the control-plane CLI: errors stay on one line whatever the terminal width,
`rollouts watch` follows a rollout, a rollback is not counted as failures, and the dashboard reads
fields the API really returns."""

from __future__ import annotations

from typer.testing import CliRunner

from tests.support import console_page
from tests.support.console_page import INDEX
from tests.support.paths import SHARED_MODELS
from tinyfleet.cli import app
from tinyfleet.server.cli import _rollout_rows

MODEL = SHARED_MODELS / "hello_world_int8.tflite"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), terminal_width=60)
    return result.exit_code, result.output


def test_a_long_error_is_one_line_on_a_narrow_terminal(cli_server):
    code, out = run("models", "versions", "a-model-name-long-enough-to-overflow-a-sixty-column-terminal")
    assert code == 1
    assert out.startswith("error:") and out.count("\n") == 1, out


def _rollout(by_state: dict[str, int], rollback: dict[str, int]) -> dict:
    return {
        "id": 2, "name": "r", "model_name": "speech", "version": "1.1.0", "state": "rolled_back",
        "current_wave": 0, "wave_sizes": [5, 45], "waves": [], "state_reason": "asked",
        "deploy": {"total": 50, "by_state": by_state},
        "rollback": {"total": sum(rollback.values()), "by_state": rollback}, "transfer": {},
    }  # fmt: skip


def test_rolled_back_devices_are_not_failures():
    row = _rollout_rows([_rollout({"rolled_back": 5, "queued": 45}, {"confirmed": 5})])[0]
    assert row[6] == 0
    row = _rollout_rows([_rollout({"failed": 2, "timed_out": 1, "rolled_back": 3}, {"confirmed": 3})])[0]
    assert row[6] == 3


def test_rollouts_watch_stops_when_the_rollout_does_not_move(cli_server, shared_models):
    assert run("models", "create", "hello")[0] == 0
    assert run("models", "upload", "hello", str(MODEL), "--version", "1.0.0", "--hardware-class", "1")[0] == 0
    assert run("devices", "provision", "--hardware-class", "1", "--id", "dev-w")[0] == 0
    code, _ = run("rollouts", "create", "--model", "hello", "--version", "1.0.0", "--device", "dev-w")
    assert code == 0
    # a draft does not move: one line, then it returns, exit code 1 as it did not complete
    code, out = run("rollouts", "watch", "1")
    assert code == 1 and "hello 1.0.0  draft  wave 1/1  confirmed 0/0  failed 0" in out
    assert out.count("\n") == 2 and "error: rollout 1 is draft, not completed" in out
    code, out = run("rollouts", "watch", "99")
    assert code == 1 and out.startswith("error:") and "404" in out


def test_dashboard_reads_fields_the_api_returns(cli_server, shared_models):
    page = INDEX.read_text()
    src = console_page.source((".js",))
    with cli_server.client() as c:
        assert c.get("/").text == page  # served without a token; the page asks for it
        model = c.post("/api/models", json={"name": "hello"}).json()
        version = c.post(
            f"/api/models/{model['id']}/versions",
            params={"version": "1.0.0", "hardware_class": 1},
            content=MODEL.read_bytes(),
            headers={"Content-Type": "application/octet-stream"},
        ).json()
        c.post("/api/devices", json={"id": "dev-d", "hardware_class": 1}).raise_for_status()
        body = {"name": "r", "model_version_id": version["id"], "selector": {"device_ids": ["dev-d"]}}
        c.post("/api/rollouts", json=body).raise_for_status()
        rollout = c.get("/api/rollouts").json()[0]
        models = c.get("/api/console/models").json()
        facets = c.get("/api/console/facets").json()
        compare = c.get("/api/telemetry/compare", params={"a": version["id"], "b": version["id"]}).json()
        device = c.get("/api/devices").json()[0]
    keys = ("model_name", "version", "state", "current_wave", "wave_sizes", "state_reason", "canary", "gates")
    for key in keys:
        assert key in rollout and f"r.{key}" in src
    assert {"bytes_sent", "raw_bytes", "encodings"} <= set(rollout["transfer"])
    assert "t.bytes_sent" in src and "t.raw_bytes" in src and "r.transfer.encodings" in src
    pkg = models[0]["versions"][0]["packages"][0]
    for key in ("size", "model_size", "arena_bytes", "encoding", "ops", "variants", "signed_by", "sequence"):
        assert key in pkg and f"pkg.{key}" in src
    assert pkg["ops"] and {"id", "label", "devices"} == set(facets["versions"][0]) and "v.label" in src
    for key in ("reports", "inference_count", "errors", "error_rate", "latency_us_mean", "class_histogram"):
        assert key in compare["a"] and f"sa.{key}" in src
    assert "js_divergence" in compare and "js_divergence: jsd" in src
    for key in ("online", "reported", "active_model_sha256", "last_seen", "hardware_class"):
        assert key in device and f"d.{key}" in src
