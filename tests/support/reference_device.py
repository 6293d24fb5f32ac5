"""examples/reference_device/device.py run as a child process, as its user would run it (tests/examples,
tests/test_protocol_schemas.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.paths import REPO

DEVICE = REPO / "examples" / "reference_device" / "device.py"


class RunningDevice:
    """The reference device on a provisioning answer, its output in workdir/<id>.log; stop() ends it."""

    def __init__(self, answer: dict[str, Any], workdir: Path, host: str, port: int) -> None:
        self.answer_path = workdir / f"{answer['device']['id']}.json"
        self.answer_path.write_text(json.dumps(answer))
        self.log_path = workdir / f"{answer['device']['id']}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(DEVICE),
                "--provisioning",
                str(self.answer_path),
                "--state-dir",
                str(workdir / f"{answer['device']['id']}-flash"),
                "--host",
                host,
                "--port",
                str(port),
                "--telemetry-period",
                "1",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()
        return self.process.returncode
