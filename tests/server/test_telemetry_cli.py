"""`tinyfleet telemetry series` and `compare` against a running server (table and --json)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tinyfleet.cli import app
from tinyfleet.server.stack import run_stack


@pytest.fixture
def server(tmp_path, monkeypatch, shared_models):
    with run_stack(data_dir=tmp_path / "server", background=False) as st:
        monkeypatch.setenv("TINYFLEET_API_URL", st.url)
        monkeypatch.setenv("TINYFLEET_API_TOKEN", st.token)
        client = httpx.Client(base_url=st.url, headers={"Authorization": f"Bearer {st.token}"})
        model = client.post("/api/models", json={"name": "tele"}).json()
        shas = []
        for i, version in enumerate(("1.0.0", "1.1.0")):
            data = (shared_models / "pairs" / f"hello_world_int8.{i}.tflite").read_bytes()
            params = {"version": version, "hardware_class": 1}
            mv = client.post(f"/api/models/{model['id']}/versions", params=params, content=data).json()
            shas.append(mv["packages"][0]["model_sha256"])
        now = time.time()
        messages = []
        for i, sha in enumerate(shas):
            device_id = f"dev{i}"
            assert client.post("/api/devices", json={"id": device_id, "hardware_class": 1}).status_code == 201
            slots = [{"valid": True, "model_sha256": sha, "sequence": 1}]
            reported = {"runtime_version": 256, "hardware_class": 1, "phase": "idle", "active_slot": 0}
            st.ctx.messages.handle(
                f"tf/{device_id}/reported", json.dumps(reported | {"slots": slots}).encode()
            )
            reports = [
                {
                    "ts": now - 600 + 60 * k,
                    "model_sha256": sha,
                    "inference_count": 20,
                    "latency_us_mean": 1000.0,
                    "class_histogram": [10 + 5 * i, 10 - 5 * i],
                    "confidence_mean": 0.8,
                    "errors": i,
                    "arena_bytes": 2048,
                }
                for k in range(5)
            ]
            messages.append((device_id, json.dumps({"reports": reports}).encode()))
        st.ctx.telemetry_ingest.write_now(messages)
        client.close()
        yield st


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def js(*args: str) -> Any:
    code, out, err = run(*args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_series_and_compare(server):
    out = js(
        "telemetry",
        "series",
        "--metric",
        "errors",
        "--model",
        "tele",
        "--version",
        "1.1.0",
        "--resolution",
        "5m",
    )
    assert sum(p["value"] for p in out["points"]) == 5 and out["resolution"] == "5m"
    raw = js("telemetry", "series", "--metric", "inferences", "--device", "dev0", "--resolution", "raw")
    assert [p["value"] for p in raw["points"]] == [20] * 5
    code, table, _ = run(
        "telemetry", "series", "--metric", "class_share", "--device", "dev1", "--since", "3600"
    )
    assert code == 0 and "class_share per 1m" in table
    cmp = js("telemetry", "compare", "--model", "tele", "--a", "1.0.0", "--b", "1.1.0")
    assert cmp["a"]["errors"] == 0 and cmp["b"]["errors"] == 5 and cmp["js_divergence"] > 0
    code, table, _ = run("telemetry", "compare", "--model", "tele", "--a", "1.0.0", "--b", "1.1.0")
    assert code == 0 and "JS divergence" in table and "1.1.0" in table


def test_bad_options_fail_in_one_line(server):
    for args, fragment in (
        (("series", "--metric", "speed", "--device", "dev0"), "--metric must be one of"),
        (("series", "--metric", "errors"), "give --device"),
        (("series", "--metric", "errors", "--device", "dev0", "--resolution", "2m"), "--resolution"),
        (("compare", "--model", "tele", "--a", "1.0.0", "--b", "9.9.9"), "no version '9.9.9'"),
        (("series", "--metric", "errors", "--device", "dev0", "--since", "10", "--until", "20"), "until"),
    ):
        code, _out, err = run("telemetry", *args)
        assert code == 1 and fragment in err, (args, err)


def test_every_option_has_help():
    import typer

    telemetry = typer.main.get_command(app).commands["telemetry"]  # type: ignore[attr-defined]
    for name in ("series", "compare"):
        command = telemetry.commands[name]
        assert command.help
        options = [p for p in command.params if p.param_type_name == "option"]
        assert options == command.params
        assert all(p.help for p in options), [p.name for p in options if not p.help]
