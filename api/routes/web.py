"""The web UI: the search page at ``/``, the admin page at ``/admin``, and their static assets.

Plain HTML, CSS and ES modules from ``api/web`` (no build step), served by the API itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse

from api.errors import RequestError
from api.input_checks import resolve_under
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


@router.get("/ui/{path:path}")
def asset(path: str) -> FileResponse:
    file = resolve_under(WEB_ROOT, path)  # None for names no file system holds, not ENAMETOOLONG
    if file is None or file.suffix == ".html":
        raise RequestError(404, "not_found", f"no asset at {path!r}")
    media_type = "text/javascript; charset=utf-8" if file.suffix == ".js" else None
    return FileResponse(file, media_type=media_type, headers=NO_CACHE)
