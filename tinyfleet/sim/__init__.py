"""Simulated devices: agents that speak MQTT to the server and UART frames to the real C runtime.

The wire protocol and the runtime binding live in `tinyfleet.device`; the agent, fleet and QEMU modules
here build on them.
"""
