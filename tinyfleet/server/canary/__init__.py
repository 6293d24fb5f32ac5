"""Canary analysis: a rollout wave's devices on the new model (canary) against devices still on the
model they ran before (control), over the same time window. `stats` is the pure statistics, `gate` the
driver step that reads telemetry rows, stores verdicts and applies the policy."""
