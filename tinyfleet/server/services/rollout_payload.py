"""What a rollout sends each device: the package or a smaller variant of it, its encrypted copy, and the
desired state naming it; a refused variant is resent raw. A mixin of RolloutDriver
(services/rollout_driver.py), split from it to keep each module readable; its answers are memoised for
one rollout's tick (`_memo`, reset by the driver), as thousands of devices of one tick ask the same.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from sqlmodel import Session

from tinyfleet.server.models import Device, DeviceAction, Package
from tinyfleet.server.services import encrypted as encsvc
from tinyfleet.server.services import packages as pkgsvc
from tinyfleet.server.services import registry
from tinyfleet.server.services import variants as varsvc
from tinyfleet.server.services.rollout_scan import wants_raw_retry
from tinyfleet.server.services.served import ServedBytes
from tinyfleet.server.services.signer import ServerKeys
from tinyfleet.signing.codes import ErrorCode
from tinyfleet.signing.manifest import ENCODING_NAMES

log = logging.getLogger(__name__)

Desired = tuple[str, dict[str, Any]]


class RolloutPayloads:
    """Payload choice for RolloutDriver; the attributes are the driver's (set in its __init__)."""

    _chunk: int
    keys: ServerKeys | None
    variants: varsvc.VariantBuilder | None
    served: ServedBytes
    _memo: dict[tuple[str, str | None, str | int | None], Any]
    _encrypted: bool

    def _package(self, session: Session, package_id: str) -> Package:
        """The package row, held for the tick: the session's identity map keeps rows only while someone
        does, and thousands of devices of one tick each fetched it again."""
        key = ("package", package_id, None)
        if key not in self._memo:
            self._memo[key] = pkgsvc.get_package(session, package_id)
        package: Package = self._memo[key]
        return package

    def _chunk_size(self, session: Session, hardware_class: int) -> int:
        key = ("chunk_size", None, hardware_class)
        if key not in self._memo:
            self._memo[key] = registry.chunk_size_for(session, hardware_class, self._chunk)
        size: int = self._memo[key]
        return size

    def count_sent(self, session: Session, action: DeviceAction) -> None:
        """Copy the chunk bytes served for this action into its row (plus a refused delta's bytes)."""
        sent_id = action.sent_package_id or action.package_id
        if sent_id:
            action.bytes_sent = action.fallback_bytes + self.served.get(session, action.device_id, sent_id)

    def _assign_payload(self, session: Session, action: DeviceAction, device: Device) -> bool:
        """Pick what this device is sent: the smallest of raw, compressed and a delta against its active
        model as reported. False while a needed variant is still being built (the action waits)."""
        pkg = self._package(session, action.package_id or "")
        choice: varsvc.Choice | None = varsvc.Choice(pkg.id, pkg.size, pkg.payload_encoding, pkg.size)
        # Devices on the same base get the same answer: asked once per tick, not once per device.
        memo_key = ("choice", pkg.id, device.active_model_sha256)
        known = self._memo.get(memo_key)
        # When the package as stored is the smallest for this base, every device gets it: capabilities
        # (deferred, so one query per device: 7% of the server's CPU in a rollout) are read only when a
        # variant may be sent.
        raw_best = known is not None and known[0] is not None and known[0].package_id == pkg.id
        # A device that said it has no payload decoder (PROTOCOL 4.2 capabilities) gets the package as is.
        if (
            self.variants is not None
            and not raw_best
            and (device.capabilities or {}).get("payload_decoder") is not False
        ):
            if memo_key in self._memo:
                choice, missing = self._memo[memo_key]
            else:
                choice, missing = varsvc.choose(session, pkg, device.active_model_sha256, self.keys)
            if choice is not None:
                self._memo[memo_key] = (choice, missing)
            if choice is None and not self.variants.running and self.keys is not None:
                # No worker thread (tests, tools): build inside this tick's transaction.
                for base in missing:
                    varsvc.build_in_session(session, self.keys, pkg.id, base)
                choice, missing = varsvc.choose(session, pkg, device.active_model_sha256, self.keys)
            if choice is None:
                for base in missing:
                    self.variants.request(pkg.id, base)
                return False
        assert choice is not None
        choice = self._sealed(session, choice)
        action.sent_package_id, action.payload_encoding = choice.package_id, choice.encoding
        action.sent_size, action.raw_size = choice.size, choice.raw_size
        self.served.reset(session, device.id, choice.package_id)
        return True

    def _fall_back_to_raw(
        self, session: Session, actions: list[DeviceAction], devices: dict[str, Device], now: float
    ) -> list[Desired]:
        """A device that refused a delta or compressed payload (WRONG_BASE, DELTA_CORRUPT) gets the raw
        package in the same action: its reported base was stale or the stream did not decode there."""
        publish: list[Desired] = []
        for a in actions:
            if not wants_raw_retry(a) or a.package_id is None:
                continue
            if a.payload_encoding == 0:  # the raw package's encrypted copy was refused: nothing to fall to
                continue
            device = devices.get(a.device_id) or session.get(Device, a.device_id)
            if device is None:
                continue
            pkg = self._package(session, a.package_id)
            self.count_sent(session, a)
            a.fallback_bytes = a.bytes_sent
            a.fallback_reason = (
                f"{ErrorCode(a.error_code).name} ({a.error_code}) on the"
                f" {ENCODING_NAMES.get(a.payload_encoding or 0, '?')} payload; sent raw"
            )
            raw = self._sealed(session, varsvc.Choice(pkg.id, pkg.size, pkg.payload_encoding, pkg.size))
            a.sent_package_id, a.payload_encoding, a.sent_size = raw.package_id, raw.encoding, raw.size
            a.state, a.error_code, a.error = "notified", ErrorCode.OK, ""
            a.updated_at = a.notified_at = now
            self.served.reset(session, device.id, raw.package_id)
            device.desired = self._desired_install(session, a, device)
            session.add(a)
            session.add(device)
            publish.append((device.id, device.desired))
            log.info("action %s: %s", a.id, a.fallback_reason)
        return publish

    def _sealed(self, session: Session, choice: varsvc.Choice) -> varsvc.Choice:
        """In an encrypted rollout, the encrypted copy of the chosen package or variant (made once)."""
        if not self._encrypted or self.keys is None:
            return choice
        key = ("sealed", choice.package_id, None)
        if key not in self._memo:
            sealed = encsvc.encrypted_copy(session, self.keys, choice.package_id)
            self._memo[key] = replace(choice, package_id=sealed.id, size=sealed.size)
        sealed_choice: varsvc.Choice = self._memo[key]
        return sealed_choice

    def _desired_install(self, session: Session, action: DeviceAction, device: Device) -> dict[str, Any]:
        pkg = self._package(session, action.package_id or "")
        doc: dict[str, Any] = {
            "action_id": action.id,
            "operation": "install",
            "package_id": action.sent_package_id or pkg.id,
            "package_size": action.sent_size or pkg.size,
            "model_sha256": pkg.model_sha256,
            "chunk_size": self._chunk_size(session, device.hardware_class),
        }
        if self._encrypted:  # the content key wrapped for this device (made once, then stored)
            key = ("content_key", action.sent_package_id, device.id)
            content_key = self._memo.pop(key) if key in self._memo else None
            if content_key is None:
                content_key = encsvc.content_key_field(session, action.sent_package_id, device)
            if content_key is not None:
                doc["content_key"] = content_key
        return doc

    def _wrap_keys(self, session: Session, sent: list[tuple[DeviceAction, Device]]) -> None:
        """In an encrypted rollout, wrap the content keys of every device a tick dispatches at once (one
        INSERT for all their wraps, services/encrypted.py); _desired_install then takes each from here."""
        if not self._encrypted or not sent:
            return
        fields = encsvc.content_key_fields(session, [(a.sent_package_id, device) for a, device in sent])
        for (package_id, device_id), field in fields.items():
            self._memo[("content_key", package_id, device_id)] = field
