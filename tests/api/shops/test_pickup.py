"""A product the shop's backend inserts with its own SQL is searchable within seconds: the
catalog trigger's NOTIFY wakes the background worker, whose poll is set far longer than that."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from api.main import build_state, create_app
from api.settings import Settings
from tests.api.conftest import ADMIN_TOKEN
from tests.api.shops.schemas import MEDUSA, photos

PICKUP_LIMIT_S = 10.0
"""Generous on a shared 2-core machine; the poll is 300 s, so only NOTIFY can explain a pass."""


def test_a_row_written_by_the_shop_is_found_within_seconds(
    create_database: Callable[[], str],
    make_settings: Callable[..., Settings],
    clothing_dataset: Path,
    tmp_path: Path,
) -> None:
    url = create_database()
    engine = create_engine(url)
    chosen = photos(clothing_dataset)
    with engine.begin() as conn:
        MEDUSA.create(conn, chosen[:4], tmp_path)
    settings = make_settings(
        database_url=url, admin_token=ADMIN_TOKEN, image_root=tmp_path, **MEDUSA.settings
    )
    state = build_state(settings)
    app = create_app(settings, state, embed_worker=True)
    try:
        with TestClient(app) as client:
            worker = app.state.embedding_worker
            worker.poll_s = 300.0
            deadline = time.monotonic() + 120
            while worker.state != "idle" and time.monotonic() < deadline:
                time.sleep(0.1)
            assert worker.state == "idle"
            for photo in (chosen[5][1], chosen[9][1]):
                relative = f"uploads/new-{photo.name}"
                (tmp_path / relative).write_bytes(photo.read_bytes())
                handle = f"new-{uuid.uuid4().hex[:8]}"
                started = time.monotonic()
                with engine.begin() as conn:  # the shop's ORM, not our API
                    conn.execute(
                        text(
                            "INSERT INTO product (id, title, handle, status, thumbnail) "
                            "VALUES (:id, 'New arrival', :h, 'published', :t)"
                        ),
                        {"id": f"prod_{uuid.uuid4().hex}", "h": handle, "t": relative},
                    )
                found = False
                while time.monotonic() - started < PICKUP_LIMIT_S and not found:
                    body = client.post(
                        "/api/v1/search/image",
                        files={"file": ("q.jpg", photo.read_bytes(), "image/jpeg")},
                        data={"top_k": 1},
                    ).json()
                    found = bool(body["results"]) and body["results"][0]["sku"] == handle
                    time.sleep(0.05)
                assert found, f"not searchable {PICKUP_LIMIT_S} s after the INSERT"
    finally:
        state.close()
        engine.dispose()
