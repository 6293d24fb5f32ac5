"""The server's signing key and trust store.

The key signs packages the server builds from uploaded .tflite files. The trust store (that key plus
any offline release keys) verifies uploaded packages and is what provisioned devices are told to trust.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tinyfleet.server.config import ConfigError, Settings
from tinyfleet.signing.errors import KeyFileError
from tinyfleet.signing.keys import (
    TrustStore,
    generate_private_key,
    key_id,
    load_private_key,
    load_public_key,
    public_raw,
    save_keypair,
)

log = logging.getLogger(__name__)


@dataclass
class ServerKeys:
    private_key: Ed25519PrivateKey
    trust_store: TrustStore

    @property
    def key_id_hex(self) -> str:
        return key_id(self.private_key).hex()

    def public_keys(self) -> list[dict[str, str]]:
        return [{"key_id": k.key_id.hex(), "public_key": k.public_key.hex()} for k in self.trust_store]


def load_server_keys(settings: Settings) -> ServerKeys:
    passphrase = settings.signing_key_passphrase.encode() if settings.signing_key_passphrase else None
    try:
        if settings.signing_key_path is not None:
            private = load_private_key(settings.signing_key_path, passphrase)
        else:
            # Development only (Settings.validate refuses production without a key): a key kept in the
            # data dir so that packages stay verifiable across restarts.
            prefix = settings.data_dir / "server-signing"
            pem = prefix.with_suffix(".pem")
            if pem.exists():
                private = load_private_key(pem, passphrase)
            else:
                private = generate_private_key()
                save_keypair(prefix, private, passphrase)
                log.warning("generated a development signing key at %s", pem)
        store = TrustStore([public_raw(private)])
        for path in settings.trusted_key_paths:
            store.add(load_public_key(path))
    except KeyFileError as exc:
        raise ConfigError(f"signing keys: {exc}") from None
    return ServerKeys(private, store)
