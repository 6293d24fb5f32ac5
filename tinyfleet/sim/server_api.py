"""The few control-plane REST calls the simulator, the demo and the benchmark make (httpx, bearer token).

Errors come back as `ServerApiError` with the server's own message, never as an httpx traceback.
`DEFAULT_URL` and `DEFAULT_TOKEN` are the control-plane CLI's own defaults (TINYFLEET_API_URL,
TINYFLEET_API_TOKEN), repeated here because sim never imports server.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import httpx

from tinyfleet.signing.keys import TrustedKey
from tinyfleet.sim.profiles import DeviceProfile

API_PREFIX = "/api"
DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TOKEN = "tinyfleet-dev-token"


class ServerApiError(RuntimeError):
    """The server refused a request (status: its HTTP status) or could not be reached (status None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class DeviceExistsError(ServerApiError):
    """Devices with these ids exist already: taking them over would re-issue their credentials and knock
    whatever uses them now offline, so it is never done without asking (`take_over=True`)."""

    def __init__(self, device_ids: Iterable[str]) -> None:
        self.device_ids = tuple(device_ids)
        super().__init__(
            f"{len(self.device_ids)} device id(s) exist already: {', '.join(self.device_ids)}", 409
        )


@dataclass(frozen=True)
class ProvisionedDevice:
    device_id: str
    username: str
    password: str | None  # None with a certificate identity (server TINYFLEET_DEVICE_AUTH=cert)
    mqtt_host: str | None
    mqtt_port: int | None
    trusted_keys: tuple[TrustedKey, ...]
    chunk_size: int
    # Certificate identity: the device's certificate (CN = its id) and key, and the fleet CA (PEM).
    cert_pem: str | None = None
    key_pem: str | None = None
    ca_pem: str | None = None
    mqtt_tls: bool = False
    # The device's X25519 private key (base64) for encrypted rollouts, given once at provisioning.
    encryption_key: str | None = None


def _provisioned(doc: dict[str, Any]) -> ProvisionedDevice:
    """A POST /devices (or /credentials) answer: a password, or a certificate in cert mode."""
    mqtt = doc["mqtt"]
    cert = doc.get("certificate") or {}
    keys = tuple(TrustedKey.from_hex(k["key_id"], k["public_key"]) for k in doc["trust_store"])
    return ProvisionedDevice(
        device_id=doc["device"]["id"],
        username=mqtt["username"],
        password=mqtt.get("password"),
        mqtt_host=mqtt.get("host"),
        mqtt_port=mqtt.get("port"),
        trusted_keys=keys,
        chunk_size=int(doc.get("chunk_size", 1024)),
        cert_pem=cert.get("certificate_pem"),
        key_pem=cert.get("private_key_pem"),
        ca_pem=cert.get("ca_pem"),
        mqtt_tls=bool(mqtt.get("tls")),
        encryption_key=doc.get("encryption_key"),
    )


class ServerApi:
    def __init__(self, base_url: str, token: str, timeout: float = 30.0, prefix: str = API_PREFIX) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url + prefix,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ServerApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServerApiError(f"cannot reach the server at {self.base_url}: {exc}") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ServerApiError(
                f"{method} {path}: HTTP {response.status_code}: {detail}", response.status_code
            )
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    # ----- devices ----------------------------------------------------------------------------------------

    def provision(
        self,
        device_id: str,
        hardware_class: int,
        group: str | None = None,
        tags: list[str] | None = None,
        *,
        take_over: bool = False,
    ) -> ProvisionedDevice:
        """Register a device. If the id exists, raise `DeviceExistsError`; with take_over, re-issue its
        credentials instead (whatever holds the old ones is disconnected for good)."""
        body: dict[str, Any] = {"id": device_id, "hardware_class": hardware_class, "tags": tags or []}
        if group:
            body["group"] = group
        try:
            doc = self._request("POST", "/devices", json=body)
        except ServerApiError as exc:
            if exc.status != 409:
                raise
            if not take_over:
                raise DeviceExistsError([device_id]) from None
            return self._take_over(device_id)
        return _provisioned(doc)

    def _take_over(self, device_id: str) -> ProvisionedDevice:
        """New credentials for an existing device: a new certificate (the old one revoked) on a cert-mode
        server, else a new password; and a new X25519 key for encrypted rollouts (PROTOCOL 6.4), since the
        server keeps only the public half of the old one (its cached wraps are dropped with it)."""
        try:
            got = _provisioned(self._request("POST", f"/devices/{device_id}/certificate", json={}))
        except ServerApiError as exc:
            if exc.status != 409:
                raise
            got = _provisioned(self._request("POST", f"/devices/{device_id}/credentials"))
        if got.encryption_key is None:
            issued = self._request("POST", f"/devices/{device_id}/encryption-key")
            got = replace(got, encryption_key=issued["encryption_key"])
        return got

    def provision_bulk(self, devices: list[dict[str, Any]]) -> list[ProvisionedDevice]:
        """Register devices ({id, hardware_class, group?, tags?}, at most 10,000) in one call, all or
        none: if any id exists, raise `DeviceExistsError` naming those ids (nothing was created)."""
        try:
            doc = self._request("POST", "/devices/bulk", json={"devices": devices})
        except ServerApiError as exc:
            if exc.status != 409:
                raise
            raise DeviceExistsError(self.existing_device_ids(d["id"] for d in devices)) from None
        mqtt = doc["mqtt"]
        keys = tuple(TrustedKey.from_hex(k["key_id"], k["public_key"]) for k in doc["trust_store"])
        return [
            ProvisionedDevice(
                device_id=d["id"],
                username=d["id"],  # a device's MQTT username is its id (its certificate's CN)
                password=d.get("password"),
                mqtt_host=mqtt.get("host"),
                mqtt_port=mqtt.get("port"),
                trusted_keys=keys,
                chunk_size=int(d["chunk_size"]),
                cert_pem=d.get("certificate_pem"),
                key_pem=d.get("private_key_pem"),
                ca_pem=doc.get("ca_pem"),
                mqtt_tls=bool(mqtt.get("tls")),
                encryption_key=d.get("encryption_key"),
            )
            for d in doc["devices"]
        ]

    def put_hardware_class(self, profile: DeviceProfile, chunk_size: int = 1024) -> None:
        self._request(
            "PUT",
            f"/hardware-classes/{profile.hardware_class}",
            json={"name": profile.name, "chunk_size": chunk_size},
        )

    def device(self, device_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/devices/{device_id}")
        return result

    def devices(self, **params: Any) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", "/devices", params=params)
        return result

    def existing_device_ids(self, device_ids: Iterable[str]) -> list[str]:
        """Those of device_ids the server knows, in the order given."""
        known = {d["id"] for d in self.devices()}
        return [d for d in device_ids if d in known]

    def delete_device(self, device_id: str) -> None:
        self._request("DELETE", f"/devices/{device_id}")

    # ----- packages and rollouts --------------------------------------------------------------------------

    def ensure_model(self, name: str, description: str = "") -> dict[str, Any]:
        """The registry model called name, created when missing."""
        for model in self._request("GET", "/models"):
            if model["name"] == name:
                found: dict[str, Any] = model
                return found
        created: dict[str, Any] = self._request(
            "POST", "/models", json={"name": name, "description": description}
        )
        return created

    def upload_tflite(
        self, model_id: int, tflite: bytes, *, version: str, hardware_class: int, notes: str = ""
    ) -> dict[str, Any]:
        """A .tflite for the server to check, sign and package (and later send as a delta)."""
        result: dict[str, Any] = self._request(
            "POST",
            f"/models/{model_id}/versions",
            params={"version": version, "hardware_class": hardware_class, "notes": notes},
            content=tflite,
            headers={"Content-Type": "application/octet-stream"},
        )
        return result

    def upload_package(
        self, package: bytes, notes: str = "", allow_selftest_mismatch: bool = False
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"notes": notes}
        if allow_selftest_mismatch:
            params["allow_selftest_mismatch"] = "true"
        result: dict[str, Any] = self._request(
            "POST",
            "/packages",
            params=params,
            content=package,
            headers={"Content-Type": "application/octet-stream"},
        )
        return result

    def create_rollout(self, **body: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", "/rollouts", json=body)
        return result

    def rollout(self, rollout_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/rollouts/{rollout_id}")
        return result

    def rollout_actions(self, rollout_id: int, purpose: str | None = None) -> list[dict[str, Any]]:
        params = {"purpose": purpose} if purpose else {}
        result: list[dict[str, Any]] = self._request("GET", f"/rollouts/{rollout_id}/actions", params=params)
        return result

    def rollout_command(self, rollout_id: int, command: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", f"/rollouts/{rollout_id}/{command}")
        return result

    def telemetry(self, **params: Any) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", "/telemetry", params=params)
        return result

    def telemetry_summary(self, **params: Any) -> dict[str, Any]:
        """GET /api/telemetry/summary (model_version_id, device_id, since, until)."""
        result: dict[str, Any] = self._request("GET", "/telemetry/summary", params=params)
        return result

    def gateway_stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/gateway/stats")
        return result
