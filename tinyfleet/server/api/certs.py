"""Device certificates (TINYFLEET_DEVICE_AUTH=cert): rotate, revoke, and the fleet CA certificate."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from tinyfleet.server import schemas
from tinyfleet.server.api import views
from tinyfleet.server.api.deps import get_ctx
from tinyfleet.server.context import AppContext
from tinyfleet.server.services import device_certs as certsvc
from tinyfleet.server.services import devices as devsvc

router = APIRouter(tags=["devices"])


@router.post("/devices/{device_id}/certificate", response_model=schemas.ProvisionResult)
def rotate_certificate(
    device_id: str, body: schemas.CertificateRequest | None = None, ctx: AppContext = Depends(get_ctx)
) -> schemas.ProvisionResult:
    """A new certificate (for the CSR's key, or with a new key shown once); the device's older ones are
    revoked. The answer is the provisioning one (broker, trust store, chunk size), with no password."""
    with ctx.session() as s:
        device = devsvc.get_device(s, device_id)
        issued = certsvc.rotate(s, ctx, device, body.csr if body else None)
        return views.provisioned(s, ctx, device, None, issued)


@router.post("/devices/{device_id}/certificate/revoke", response_model=schemas.CertificateRevoked)
def revoke_certificate(device_id: str, ctx: AppContext = Depends(get_ctx)) -> schemas.CertificateRevoked:
    """Revoke every certificate of the device: the broker refuses it from its next connection on and the
    server ignores its messages at once."""
    with ctx.session() as s:
        serials = certsvc.revoke(s, ctx, devsvc.get_device(s, device_id))
    return schemas.CertificateRevoked(device_id=device_id, revoked_serials=serials)


@router.get(
    "/fleet-ca.pem",
    response_class=Response,
    responses={
        200: {"content": {"application/x-pem-file": {}}, "description": "the CA certificate"},
        409: {
            "description": "the server is not in cert mode (TINYFLEET_DEVICE_AUTH=password)",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        },
    },
)
def fleet_ca_pem(ctx: AppContext = Depends(get_ctx)) -> Response:
    """The fleet CA certificate (PEM): what devices and the broker trust."""
    ca = certsvc.ca_of(ctx)
    return Response(ca.cert_pem, media_type="application/x-pem-file")
