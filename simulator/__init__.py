"""Simulated devices: agents that speak MQTT to the server and UART frames to the real C runtime.

`simulator.frames` is the wire protocol (docs/PROTOCOL.md section 3), `simulator.runtime` the binding to
one device of the host library; the agent, fleet and QEMU modules build on them.
"""
