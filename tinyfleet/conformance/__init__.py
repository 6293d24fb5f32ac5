"""The device conformance kit (`tinyfleet conformance run`, docs/CONFORMANCE.md).

A top-level package, not part of tinyfleet.server: it drives a real control plane and broker from the
outside (HTTP API and MQTT, as a device and an operator see them) and also plays the server itself for
the packages a real server would never send (tampered, replayed, wrong class). It imports server
(to start the stack and the development broker, and the schemas) and signing (to sign packages); the
server never imports it, and it never imports tinyfleet.sim: the device under test is another process,
whatever its implementation."""
