"""Issue 11: Range parsing that cannot fail, canonical versions only, every error documented."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import HTTPException
from hypothesis import given
from hypothesis import strategies as st

from tinyfleet.server.api.packages import parse_range


@pytest.fixture(scope="module")
def tflite(shared_models: Path) -> bytes:
    return (shared_models / "hello_world_int8.tflite").read_bytes()


digits = st.text("0123456789", max_size=6000)
headers = st.one_of(
    st.text(max_size=300),
    st.builds(lambda a, b: f"bytes={a}-{b}", digits, digits),
    st.builds(lambda a, b, c: f"bytes={a}-{b},{c}-", digits, digits, digits),
    st.builds(lambda a: f" bytes=-{a} ", digits),
)


@given(header=headers, size=st.integers(min_value=0, max_value=2**40))
def test_parse_range_returns_a_range_inside_or_416(header, size):
    try:
        start, end = parse_range(header, size)
    except HTTPException as exc:
        assert exc.status_code == 416 and exc.detail and "\n" not in exc.detail
    else:
        assert 0 <= start < end <= size


@given(start=st.integers(0, 10**30), end=st.integers(0, 10**30), size=st.integers(1, 10**6))
def test_parse_range_matches_rfc_9110(start, end, size):
    header = f"bytes={start}-{end}"
    if start >= size or end < start:
        with pytest.raises(HTTPException):
            parse_range(header, size)
    else:
        assert parse_range(header, size) == (start, min(end + 1, size))


def test_huge_range_headers_over_http(api, tflite):
    model = api.ok("POST", "/api/models", 201, json={"name": "ranged"})
    params = {"version": "1.0.0", "hardware_class": 1}
    mv = api.ok("POST", f"/api/models/{model['id']}/versions", 201, params=params, content=tflite)
    pid = mv["packages"][0]["id"]
    size = mv["packages"][0]["size"]
    url = f"/api/packages/{pid}/download"
    for header in ("bytes=" + "9" * 5000 + "-", "bytes=-" + "9" * 5000, "bytes=0-" + "9" * 5000):
        resp = api.client.get(url, headers={"Range": header})
        assert resp.status_code in (206, 416), resp.text
    assert api.client.get(url, headers={"Range": "bytes=0-" + "9" * 300}).status_code == 416  # too long
    whole = api.client.get(url, headers={"Range": "bytes=-" + "9" * 30})
    assert whole.status_code == 206 and len(whole.content) == size
    assert api.client.get(url, headers={"Range": "bytes=" + "0" * 50 + "1-2"}).status_code == 206


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"version": "01.0.0"}, "query.version: '01.0.0' is not a canonical version"),
        ({"version": "1.00.0"}, "query.version"),
        ({"version": "1.0.00"}, "query.version"),
        ({"version": "65536.0.0"}, "query.version"),
        ({"version": "1.0.0 "}, "query.version"),
        ({"version": "1.0.0\n"}, "query.version"),
        ({"version": "+1.0.0"}, "query.version"),
        ({"version": "1.0.0", "min_runtime_version": "0.256.0"}, "query.min_runtime_version"),
        ({"version": "1.0.0", "min_runtime_version": "0.01.0"}, "query.min_runtime_version"),
    ],
)
def test_non_canonical_versions_are_refused(api, params, fragment):
    model = api.ok("POST", "/api/models", 201, json={"name": "semver"})
    resp = api.client.post(
        f"/api/models/{model['id']}/versions", params={"hardware_class": 1, **params}, content=b"x"
    )
    assert resp.status_code == 422 and fragment in resp.json()["detail"], resp.text
    assert "\n" not in resp.json()["detail"]


def test_canonical_edge_versions_are_accepted(api, tflite):
    model = api.ok("POST", "/api/models", 201, json={"name": "edges"})
    for version, runtime in (("0.0.0", "0.0.0"), ("65535.65535.65535", "65535.255.255"), ("10.0.1", "1.0.0")):
        params = {"version": version, "hardware_class": 1, "min_runtime_version": runtime}
        mv = api.ok("POST", f"/api/models/{model['id']}/versions", 201, params=params, content=tflite)
        assert mv["version"] == version


def test_openapi_documents_every_error(api):
    spec = api.ok("GET", "/openapi.json")
    assert spec["components"]["schemas"]["Error"]["properties"] == {
        "detail": {"type": "string", "description": "what is wrong, in one line"}
    }
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            codes = op["responses"]
            expected = set()
            if path.startswith("/api/"):
                expected |= {"401", "403", "503"}
            if op.get("parameters") or "requestBody" in op:
                expected.add("422")
            if "requestBody" in op:
                expected.add("413")
            if "{" in path:
                expected.add("404")
            if method != "get" and path.startswith("/api/"):
                expected.add("409")
            assert expected <= set(codes), (method, path, sorted(codes))
            for code in expected:
                assert codes[code]["content"] == error, (method, path, code)
    download = spec["paths"]["/api/packages/{package_id}/download"]["get"]["responses"]
    assert "416" in download and "206" in download
