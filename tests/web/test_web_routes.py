"""The UI's own routes: pages, assets with the right types, nothing outside api/web."""

from __future__ import annotations

import httpx

from tests.web.server import MAX_UPLOAD_BYTES, Server


def test_pages_and_assets_are_served(live_server: Server) -> None:
    with httpx.Client(base_url=live_server.url) as client:
        for path in ("/", "/admin"):
            page = client.get(path)
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        script = client.get("/ui/js/search-page.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert client.get("/ui/css/base.css").headers["content-type"].startswith("text/css")
        assert client.get("/ui/config.json").json() == {"max_upload_bytes": MAX_UPLOAD_BYTES}
        assert client.get("/ui/%2e%2e/routes/web.py").status_code == 404
        assert client.get("/ui/index.html").status_code == 404
        assert client.get("/ui/nope.js").json()["error"]["code"] == "not_found"
