"""/docs (Swagger UI) and /redoc (ReDoc) load every script and stylesheet from the server itself: they
work without network access, and no CDN URL appears in the pages."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urljoin

import pytest


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.urls.append(str(a["src"]))
        if (
            tag == "link"
            and a.get("href")
            and (a.get("rel") or "") in ("stylesheet", "icon", "shortcut icon")
        ):
            self.urls.append(str(a["href"]))


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_serve_their_assets_themselves(api, page: str) -> None:
    resp = api.client.get(page, headers={"Authorization": ""})
    assert resp.status_code == 200 and "text/html" in resp.headers["content-type"]
    html = resp.text
    assert "cdn" not in html.lower() and "fonts.googleapis" not in html
    parser = _Assets()
    parser.feed(html)
    assert any(url.endswith(".js") for url in parser.urls), parser.urls
    for url in parser.urls:
        assert not url.startswith(("http://", "https://", "//")), url
        asset = api.client.get(urljoin(page, url), headers={"Authorization": ""})
        assert asset.status_code == 200, url
        assert len(asset.content) > 100, url
    if page == "/docs":
        assert any(url.endswith(".css") for url in parser.urls), parser.urls
    # the OpenAPI document they render is served too
    assert api.client.get("/openapi.json", headers={"Authorization": ""}).status_code == 200
