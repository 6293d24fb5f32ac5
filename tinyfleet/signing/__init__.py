"""tinyfleet offline signing: Ed25519 keys, the signed manifest, packages (docs/PROTOCOL.md 1-2)."""

from tinyfleet.signing.errors import InvalidModelError, KeyFileError, PackageError, SigningError
from tinyfleet.signing.keys import TrustStore
from tinyfleet.signing.manifest import Manifest
from tinyfleet.signing.package import VerifiedPackage, build_package, inspect, verify_package
from tinyfleet.signing.policy import DeviceConfig, check_policy

__all__ = [
    "DeviceConfig",
    "InvalidModelError",
    "KeyFileError",
    "Manifest",
    "PackageError",
    "SigningError",
    "TrustStore",
    "VerifiedPackage",
    "build_package",
    "check_policy",
    "inspect",
    "verify_package",
]
