"""tinyfleet control plane: model registry, packages, devices, rollouts, MQTT gateway, telemetry."""
