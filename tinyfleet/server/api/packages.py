"""Packages: upload one signed offline (verified against the trust store), list, download (ranges)."""

from __future__ import annotations

import re
from typing import BinaryIO

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response

from tinyfleet.server import schemas
from tinyfleet.server.api import views
from tinyfleet.server.api.deps import OCTET_STREAM_BODY, OptDbIdQuery, get_ctx, upload_file
from tinyfleet.server.context import AppContext
from tinyfleet.server.services import packages as pkgsvc

router = APIRouter(tags=["packages"])

_RANGE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$")


@router.post(
    "/packages",
    response_model=schemas.PackagePublic,
    status_code=201,
    openapi_extra=OCTET_STREAM_BODY,
    summary="Upload a package signed offline; refused unless the server's trust store verifies it",
    description=(
        "Its sequence must be above the sequence of whatever the target devices run, whatever the model"
        " (the default of `tinyfleet sign build`, Unix seconds, is); a sequence already used by the"
        " same model is refused (409). Packages the server signs afterwards get a higher sequence."
    ),
)
def upload_package(
    notes: str = Query(default="", max_length=500),
    allow_selftest_mismatch: bool = Query(
        default=False,
        description="store a package whose self-test digest the reference interpreter does not reproduce"
        " (every device will fail its self-test and revert: for testing that path)",
    ),
    upload: BinaryIO = Depends(upload_file),
    ctx: AppContext = Depends(get_ctx),
) -> schemas.PackagePublic:
    data = upload.read()
    with ctx.session() as s:
        pkg = pkgsvc.import_signed(s, ctx.keys, data, notes, ctx.settings, allow_selftest_mismatch)
        return views.package(s, pkg)


@router.get("/packages", response_model=list[schemas.PackagePublic])
def list_packages(
    model_version_id: OptDbIdQuery = None, ctx: AppContext = Depends(get_ctx)
) -> list[schemas.PackagePublic]:
    with ctx.session() as s:
        return [views.package(s, p) for p in pkgsvc.list_packages(s, model_version_id)]


@router.get("/packages/{package_id}", response_model=schemas.PackagePublic)
def get_package(package_id: str, ctx: AppContext = Depends(get_ctx)) -> schemas.PackagePublic:
    with ctx.session() as s:
        return views.package(s, pkgsvc.get_package(s, package_id))


MAX_RANGE_HEADER = 200  # far above any real single range; longer headers are refused unparsed


def _position(digits: str, size: int) -> int:
    """A decimal position, capped at `size`: never converts thousands of digits (int() would refuse
    them with ValueError; any number above the size means the same as the size)."""
    digits = digits.lstrip("0") or "0"
    return size if len(digits) > len(str(size)) else min(int(digits), size)


def parse_range(header: str, size: int) -> tuple[int, int]:
    """One 'bytes=a-b' range of a `size`-byte body -> (start, end exclusive). Anything else raises
    HTTPException 416 (RFC 9110 lets a server refuse ranges it does not serve); nothing else is raised."""
    m = _RANGE.match(header.strip()) if len(header) <= MAX_RANGE_HEADER else None
    if m is None or (not m.group(1) and not m.group(2)):
        raise HTTPException(status_code=416, detail="only one range of the form bytes=a-b is supported")
    first, last = m.group(1), m.group(2)
    if not first:  # suffix: the last N bytes
        n = _position(last, size)
        if n == 0:
            raise HTTPException(status_code=416, detail="empty suffix range (or empty package)")
        return size - n, size
    start = _position(first, size)
    end = min(_position(last, size) + 1, size) if last else size
    if start >= size or end <= start:
        raise HTTPException(status_code=416, detail=f"range outside the {size}-byte package")
    return start, end


@router.get(
    "/packages/{package_id}/download",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}, 206: {"description": "partial"}},
)
def download_package(
    package_id: str,
    range_header: str | None = Header(default=None, alias="Range"),
    ctx: AppContext = Depends(get_ctx),
) -> Response:
    with ctx.session() as s:
        pkg = pkgsvc.get_package(s, package_id)
        data = ctx.cache.get(s, package_id)
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": f'"{pkg.sha256}"',
        "Content-Disposition": f'attachment; filename="{package_id}.tfpkg"',
    }
    if range_header is None:
        return Response(data, media_type="application/octet-stream", headers=headers)
    try:
        start, end = parse_range(range_header, len(data))
    except HTTPException as exc:
        exc.headers = {"Content-Range": f"bytes */{len(data)}"}
        raise
    headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
    return Response(data[start:end], status_code=206, media_type="application/octet-stream", headers=headers)
