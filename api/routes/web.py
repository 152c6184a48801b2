"""The web UI: the search page at ``/``, the admin page at ``/admin``, and their static assets.

Plain HTML, CSS and ES modules from ``api/web`` (no build step), served by the API itself; the
assets through Starlette's :class:`~starlette.staticfiles.StaticFiles`, which also answers
conditional requests (ETag, Last-Modified: a revalidated asset costs a 304, not its bytes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from api.state import AppState, app_state

WEB_ROOT = Path(__file__).resolve().parents[1] / "web"
NO_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


def _page(name: str) -> FileResponse:
    return FileResponse(WEB_ROOT / name, media_type="text/html; charset=utf-8", headers=NO_CACHE)


@router.get("/")
def index() -> FileResponse:
    return _page("index.html")


@router.get("/admin")
def admin() -> FileResponse:
    return _page("admin.html")


@router.get("/ui/config.json")
def ui_config(state: AppState = Depends(app_state)) -> dict[str, Any]:
    """What the browser checks before sending anything (the upload size limit)."""
    return {"max_upload_bytes": state.settings.max_upload_bytes}


class WebAssets(StaticFiles):
    """``api/web`` under ``/ui/``: every asset revalidated on each load (``no-cache``: a deploy is
    seen at once, an unchanged file costs a 304), JavaScript with one content type whatever the
    host's mime table says, and the pages only at their own routes."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if path.endswith(".html"):
            raise HTTPException(404, f"no asset at {path!r}")
        try:
            response = await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code != 404:
                raise
            raise HTTPException(404, f"no asset at {path!r}") from None
        response.headers.update(NO_CACHE)
        if path.endswith(".js"):
            response.headers["content-type"] = "text/javascript; charset=utf-8"
        return response


# After /ui/config.json, which it would otherwise shadow.
router.mount("/ui", WebAssets(directory=WEB_ROOT), name="ui")
