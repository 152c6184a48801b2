"""Bearer-token guard for write endpoints and stats; reads stay public."""

from __future__ import annotations

import secrets

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import RequestError
from api.state import AppState, app_state

admin_bearer = HTTPBearer(
    auto_error=False, scheme_name="AdminToken", description="the LOOKALIKE_ADMIN_TOKEN, as a bearer token"
)
"""Declares the scheme in the OpenAPI document (``security`` on every admin operation, so clients
and schemathesis know which calls need it); the checks and their typed errors stay ours."""


async def require_admin(
    credentials: HTTPAuthorizationCredentials | None = Depends(admin_bearer),
    state: AppState = Depends(app_state),
) -> None:
    """Bearer-token check; ``async`` so FastAPI does not spend a thread hop on it."""
    if credentials is None or not credentials.credentials.strip():
        raise RequestError(
            401, "unauthorized", "this endpoint needs Authorization: Bearer <LOOKALIKE_ADMIN_TOKEN>"
        )
    if not secrets.compare_digest(credentials.credentials.strip().encode(), state.admin_token.encode()):
        raise RequestError(403, "forbidden", "the admin token is not valid")
