"""Bearer-token guard for write endpoints and stats; reads stay public."""

from __future__ import annotations

import secrets

from fastapi import Depends, Request

from api.errors import RequestError
from api.state import AppState, app_state


async def require_admin(request: Request, state: AppState = Depends(app_state)) -> None:
    """Bearer-token check; ``async`` so FastAPI does not spend a thread hop on it."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise RequestError(
            401, "unauthorized", "this endpoint needs Authorization: Bearer <LOOKALIKE_ADMIN_TOKEN>"
        )
    if not secrets.compare_digest(token.strip().encode(), state.admin_token.encode()):
        raise RequestError(403, "forbidden", "the admin token is not valid")
