"""TLS for a simulated device with a certificate identity: what a real device does with the certificate
and key provisioning gave it (CN = its device id) and the fleet CA that signs the broker's certificate.

OpenSSL loads a certificate chain only from files: they go to a private temporary directory (mode 0700,
key 0600) for the moment of loading and are deleted right after; the context keeps them in memory.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from pathlib import Path


def device_tls_context(cert_pem: str, key_pem: str, ca_pem: str) -> ssl.SSLContext:
    """A client context that presents the device's certificate and trusts only the fleet CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the broker's certificate and name
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(cadata=ca_pem)
    with tempfile.TemporaryDirectory(prefix="tinyfleet-device-tls-") as tmp:
        cert, key = Path(tmp) / "device.pem", Path(tmp) / "device.key"
        cert.write_text(cert_pem, encoding="ascii")
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(key_pem)
        context.load_cert_chain(cert, key)
    return context
