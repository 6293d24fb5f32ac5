"""Cost of the run-time schema validation of device messages (server/services/wire_validation.py).

    .venv/bin/python bench/wire_validation.py [--rounds 20000]

For a realistic message of each kind: the time to validate it with the compiled jsonschema-rs
validator the server uses, with the pure-Python jsonschema validator for comparison, and json.loads
of the same payload (what the server does anyway) as the yardstick. Median of 5 runs, microseconds per
message, single thread. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinyfleet.server.services.wire_validation import SCHEMA_OF_KIND, check_message, schemas

SHA = "ab" * 32
REPORT = {
    "ts": 1796300000.5,
    "model_sha256": SHA,
    "inference_count": 600,
    "latency_us_mean": 812.5,
    "latency_estimated": True,
    "class_histogram": [300, 200, 100],
    "confidence_mean": 0.81,
    "errors": 0,
    "arena_bytes": 2048,
    "boot": 12345,
    "seq": 7,
}
SLOT = {"valid": True, "model_name": "vibration", "version": "1.0.0", "model_sha256": SHA, "sequence": 3}
MESSAGES: dict[str, Any] = {
    "presence": {"online": True},
    "chunk/req": {"package_id": "pkg-0123456789abcdef", "offset": 4388, "length": 1024},
    "status": {
        "action_id": "act-0123456789abcdef",
        "state": "downloading",
        "error_code": 0,
        "error": "",
        "offset": 4388,
        "bytes_received": 4096,
    },
    "reported": {
        "runtime_version": 256,
        "hardware_class": 1,
        "phase": "idle",
        "active_slot": 0,
        "security_floor": 1,
        "download_offset": 0,
        "last_error": 0,
        "slots": [SLOT, {**SLOT, "valid": False}],
        "capabilities": {
            "slot_size": 65536,
            "ram_budget": 65536,
            "sector_size": 4096,
            "engine": True,
            "ops": list(range(40)),
            "payload_decoder": True,
        },
    },
    "telemetry (1 report)": {"reports": [REPORT]},
    "telemetry (100 reports)": {"reports": [REPORT] * 100},
}


def per_call_us(fn: Callable[[], object], rounds: int) -> float:
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(rounds):
            fn()
        runs.append((time.perf_counter() - start) / rounds * 1e6)
    return statistics.median(runs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=20000)
    args = p.parse_args()
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    docs = schemas()
    registry: Registry[Any] = Registry().with_resources(
        (d["$id"], Resource.from_contents(d)) for d in docs.values()
    )
    print("| message | bytes | json.loads (us) | jsonschema-rs (server, us) | jsonschema, pure Python (us) |")
    print("|---|---:|---:|---:|---:|")
    for label, doc in MESSAGES.items():
        kind = label.split(" ")[0]
        payload = json.dumps(doc).encode()
        assert check_message(kind, doc) is None, (label, check_message(kind, doc))
        slow = Draft202012Validator(docs[SCHEMA_OF_KIND[kind]], registry=registry)
        assert slow.is_valid(doc)
        rounds = max(200, args.rounds // (20 if "100" in label else 1))
        loads = per_call_us(lambda pl=payload: json.loads(pl), rounds)
        fast = per_call_us(lambda k=kind, d=doc: check_message(k, d), rounds)
        pure = per_call_us(lambda v=slow, d=doc: v.is_valid(d), max(100, rounds // 20))
        print(f"| {label} | {len(payload)} | {loads:.2f} | {fast:.2f} | {pure:.1f} |")


if __name__ == "__main__":
    main()
