"""What simulated devices report as capabilities (PROTOCOL 4.2): the engine's operators and HELLO's limits."""

from __future__ import annotations

import asyncio

from tinyfleet.device.engine_check import ENGINE_BUILTIN_OPS
from tinyfleet.sim.agent import AgentConfig, DeviceAgent
from tinyfleet.sim.profiles import get_profile
from tinyfleet.sim.runtime_driver import RuntimeDriver


def test_agent_reports_the_profiles_capabilities() -> None:
    profile = get_profile("nbiot-m0")
    driver = RuntimeDriver(profile)
    loop = asyncio.new_event_loop()
    try:
        agent = DeviceAgent(AgentConfig("dev-caps", "127.0.0.1", 1), profile, driver, loop)
        caps = agent.capabilities()
    finally:
        driver.close()
        loop.close()
    assert caps is not None
    assert caps["slot_size"] == profile.slot_size and caps["ram_budget"] == profile.ram_budget
    assert caps["sector_size"] == profile.sector_size and caps["payload_decoder"] is True
    assert caps["ops"] == (list(ENGINE_BUILTIN_OPS) if caps["engine"] else None)
