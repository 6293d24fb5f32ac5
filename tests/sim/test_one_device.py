"""`python -m tinyfleet.sim.one_device`, the conformance kit's simulated device: bad input is one line.
(It runs against the kit in tests/conformance/test_kit.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tinyfleet.sim.one_device import main


@pytest.mark.parametrize(
    "content", [None, "not json", '{"device": {}}', '{"mqtt": {}, "device": {"id": "x"}}']
)
def test_an_unusable_provisioning_answer_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None
) -> None:
    answer = tmp_path / "answer.json"
    if content is not None:
        answer.write_text(content)
    code = main(["--provisioning", str(answer), "--state-dir", str(tmp_path / "state")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: cannot use") and len(err.splitlines()) == 1
