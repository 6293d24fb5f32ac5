"""The console in a real browser (headless Chromium through Playwright) against a real server, broker and
simulated fleet: log in with a token, create a rollout from the form, watch its waves advance, roll it
back through the confirmation dialog and see the devices return; a viewer sees no action buttons and the
API refuses it. Each page is saved as a screenshot in the test's directory; with
TINYFLEET_CONSOLE_SCREENSHOTS=docs/console a few are copied there for the README."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.e2e_harness import E2E, e2e_env, telemetry_profile, wait_for
from tests.support.paths import REPO
from tinyfleet.demo_models import MODEL_NAME
from tinyfleet.sim.profiles import get_profile

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CHROMIUM = Path("/usr/bin/chromium")
FOR_README = {
    "overview-during-rollout": "overview",
    "devices": "devices",
    "rollout-rolled-back": "rollout",
    "telemetry": "telemetry",
}


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[E2E]:
    with e2e_env(tmp_path) as e:
        yield e


def _token(env: E2E) -> str:
    # the in-process stack's token, as the harness's API client sends it
    return str(env.api._client.headers["Authorization"]).removeprefix("Bearer ")


class Shots:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def take(self, page: Any, name: str) -> None:
        page.wait_for_timeout(300)  # let Plotly finish drawing; not an assertion
        page.screenshot(path=str(self.folder / f"{name}.png"), full_page=True)

    def publish(self) -> None:
        target = os.environ.get("TINYFLEET_CONSOLE_SCREENSHOTS")
        if target:
            out = REPO / target
            out.mkdir(parents=True, exist_ok=True)
            for name, published in FOR_README.items():
                shutil.copy(self.folder / f"{name}.png", out / f"{published}.png")


def _login(browser: Any, env: E2E, token: str) -> tuple[Any, list[str]]:
    """A new page logged in with `token`, and the script errors it raises (a test ends checking none)."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(env.api.base_url + "/")
    page.fill("#login-token", token)
    page.click("#login button[type=submit]")
    page.wait_for_selector("#cards .card")
    return page, errors


def test_operator_rolls_out_and_back_from_the_console(browser, env, tmp_path):
    shots = Shots(tmp_path / "screenshots")
    specs, provisioned = env.provision(20, "web", profile=telemetry_profile(period_s=2.0))
    env.fleet(specs, provisioned[0].trusted_keys)
    first = env.rollout("v1-everywhere", 0, "web")
    assert env.wait_rollout(first["id"], ("completed", "paused"))["state"] == "completed"
    v1, v2 = env.releases[0].model_sha256, env.releases[1].model_sha256

    page, errors = _login(browser, env, _token(env))
    assert page.inner_text("#who").endswith("(admin)")
    page.wait_for_selector("#cards .card >> text=20")
    page.wait_for_selector("#ready .ok")
    shots.take(page, "overview")

    page.click("#nav >> text=Devices")
    page.wait_for_selector("#device-rows tr")
    page.fill("input[name=q]", "web-0001")
    page.wait_for_function("document.querySelectorAll('#device-rows tr').length === 10")
    page.fill("input[name=q]", "")
    page.select_option("select[name=online]", "true")
    page.wait_for_function("document.querySelectorAll('#device-rows tr').length === 20")
    shots.take(page, "devices")

    # a draft with a canary gate from the form's gate fields, encrypted (so of a server-signed version), then
    # aborted from its page
    model = env.api.ensure_model(MODEL_NAME)
    hw = get_profile("lan").hardware_class
    sealed = env.api.upload_tflite(model["id"], env.releases[1].model, version="2.0.1", hardware_class=hw)
    page.click("#nav >> text=Rollouts")
    page.click("#new-rollout")
    page.fill("#f-name", "gated-draft")
    page.select_option("#f-model_version_id", str(sealed["id"]))
    page.select_option("#f-group", "web")
    page.fill("#f-waves", "2, 100%")
    page.check("#f-use_canary")
    page.fill("#f-canary_min_inferences", "50")
    page.select_option("#f-canary_on_fail", "rollback")
    page.check("#f-encrypted")
    page.uncheck("#f-start")
    page.click("#create-rollout")
    page.wait_for_selector("#rollout-state >> text=draft")
    page.wait_for_selector("#view .badge >> text=encrypted")  # issue 18: the console marks it
    draft = env.api.rollout(int(page.url.rsplit("/", 1)[1]))
    assert draft["encrypted"] is True
    assert draft["canary"]["min_inferences"] == 50 and draft["canary"]["on_fail"] == "rollback"
    assert draft["canary"]["window_seconds"] == 300  # the form's default, as the schema's
    page.click("#cmd-abort")
    page.click("#confirm-ok")
    page.wait_for_selector("#rollout-state >> text=aborted")

    # the create form: v2 to the group in three waves, a short soak between them
    page.click("#nav >> text=Rollouts")
    page.click("#new-rollout")
    page.fill("#f-name", "v2-from-console")
    page.select_option("#f-model_version_id", str(env.version_ids[1]))
    page.select_option("#f-group", "web")
    page.fill("#f-waves", "2, 50%, 100%")
    page.fill("#f-soak_seconds", "5")
    shots.take(page, "rollout-form")
    page.click("#create-rollout")
    page.wait_for_selector("#rollout-title")
    rollout_id = int(page.url.rsplit("/", 1)[1])
    page.wait_for_selector("#soak >> text=soaking", timeout=60_000)  # wave 1 passed, its soak counts down
    shots.take(page, "rollout-soak")
    # the overview meanwhile (the rollout may have finished by now: nothing asserted on it here)
    page.click("#nav >> text=Overview")
    page.wait_for_selector("#cards .card")
    shots.take(page, "overview-during-rollout")
    page.goto(env.api.base_url + f"/#/rollouts/{rollout_id}")
    page.wait_for_selector("#rollout-state >> text=completed", timeout=120_000)
    assert len(env.api.rollout(rollout_id)["wave_sizes"]) == 3 and "wave 3" in page.inner_text("#waves")
    assert set(env.active_models(specs).values()) == {v2}
    shots.take(page, "rollout-completed")

    # roll back: the dialog first (cancel does nothing), then confirm
    page.click("#cmd-rollback")
    page.click("#confirm-cancel")
    assert env.api.rollout(rollout_id)["state"] == "completed"
    page.click("#cmd-rollback")
    assert "Roll back" in page.inner_text("#confirm-text")
    page.click("#confirm-ok")
    page.wait_for_selector("#rollout-state >> text=rolled_back", timeout=120_000)
    page.wait_for_selector("#rollback-outcome >> text=20/20 back on the old model", timeout=60_000)
    wait_for(lambda: set(env.active_models(specs).values()) == {v1}, 30, "devices back on v1")
    shots.take(page, "rollout-rolled-back")

    page.goto(env.api.base_url + "/#/devices/" + specs[0].device_id)
    page.wait_for_selector("text=Action history")
    page.wait_for_selector(".js-plotly-plot", timeout=30_000)
    shots.take(page, "device")
    page.click("#nav >> text=Models")
    page.wait_for_selector("#models table")
    shots.take(page, "models")
    page.click("#nav >> text=Telemetry")
    page.wait_for_selector(".js-plotly-plot", timeout=30_000)
    shots.take(page, "telemetry")
    page.click("#nav >> text=Tokens")
    page.wait_for_selector("#audit")
    shots.take(page, "admin")
    assert errors == []
    shots.publish()


def test_viewer_sees_no_action_buttons_and_the_api_refuses_it(browser, env, tmp_path):
    token = _token(env)
    auth = {"Authorization": f"Bearer {token}"}
    base = env.api.base_url
    if httpx.get(base + "/api/me", headers=auth).status_code == 404:
        pytest.skip("this server has no /api/me and per-user tokens yet (issue 14, users and roles)")
    httpx.post(base + "/api/users", json={"name": "vera", "role": "viewer"}, headers=auth).raise_for_status()
    created = httpx.post(base + "/api/tokens", json={"name": "console", "user": "vera"}, headers=auth)
    created.raise_for_status()
    viewer = created.json()["token"]
    env.provision(2, "view")
    draft = env.api.create_rollout(
        name="draft", model_version_id=env.version_ids[1], selector={"group": "view"}, start=False
    )

    page, errors = _login(browser, env, viewer)
    assert page.inner_text("#who").endswith("(viewer)")
    page.goto(base + f"/#/rollouts/{draft['id']}")
    page.wait_for_selector("#rollout-state >> text=draft")
    assert page.query_selector_all("#rollout-actions button") == []
    assert not page.is_visible("#nav >> text=Tokens")
    page.click("#nav >> text=Rollouts")
    page.wait_for_selector("#rollout-list table")
    assert page.query_selector("#new-rollout") is None
    page.click("#nav >> text=Models")
    page.wait_for_selector("#models table")
    assert page.query_selector("#upload-form") is None
    refused = httpx.post(
        base + f"/api/rollouts/{draft['id']}/start", headers={"Authorization": f"Bearer {viewer}"}
    )
    assert refused.status_code == 403
    assert errors == []
    Shots(tmp_path / "screenshots").take(page, "viewer-rollouts")
