"""What a committed change asks of the rest of the control plane. Services register these with
`db.after_commit(session, ...)`, so that they run only once the change is in the database; the
`AppContext` implements them (tests may pass a recorder)."""

from __future__ import annotations

from typing import Any, Protocol


class Effects(Protocol):
    def wake_rollouts(self) -> None:
        """Ask the rollout driver for a tick now (a device or rollout changed)."""

    def prepare_rollout(self, rollout_id: int) -> None:
        """A rollout started: build its devices' payload variants ahead."""

    def publish_desired(self, device_id: str, desired: dict[str, Any]) -> None:
        """Send a device its desired state (retained)."""

    def add_password_entry(self, username: str, encoded: str) -> None:
        """A new device: append its MQTT credentials to the broker's password file."""

    def add_password_entries(self, entries: list[tuple[str, str]]) -> None:
        """New devices: append all their credentials at once (one write, one broker reload)."""

    def sync_password_file(self) -> None:
        """Credentials changed or a device left: rewrite the broker's password file."""

    def forget_device(self, device_id: str) -> None:
        """A device was deleted: drop what is cached about it."""
