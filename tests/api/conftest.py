"""An in-process API over a real database, the real encoders and a small real catalog."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import build_state, create_app
from api.settings import Settings
from api.state import AppState
from tests.support import ImageServer

ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PER_CLASS = 3


@contextmanager
def running_api(settings: Settings) -> Iterator[tuple[TestClient, AppState]]:
    state = build_state(settings)
    try:
        with TestClient(create_app(settings, state)) as client:
            yield client, state
    finally:
        state.close()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class Api:
    client: TestClient
    state: AppState
    products: dict[str, Path]
    """sku → the dataset photo that product was created from."""

    def image(self, sku: str) -> bytes:
        return self.products[sku].read_bytes()


def seed_catalog(state: AppState, dataset: Path) -> dict[str, Path]:
    """PER_CLASS real photos of each of the 10 classes, as products with prices and attributes."""
    products: dict[str, Path] = {}
    for class_dir in sorted(p for p in (dataset / "train").iterdir() if p.is_dir()):
        for i, photo in enumerate(sorted(class_dir.glob("*.jpg"))[:PER_CLASS]):
            sku = f"{class_dir.name}-{i}"
            fields = {
                "name": f"{class_dir.name.replace('-', ' ').title()} no. {i}",
                "description": f"A {class_dir.name} from the clothing dataset",
                "category": class_dir.name,
                "price": 10 + 15 * i,
                "currency": "EUR",
                "attributes": {"color": ["red", "blue", "green"][i % 3], "size": "M"},
                "image_url": str(photo.relative_to(dataset)),
            }
            state.products.upsert(sku, fields, photo.read_bytes())
            products[sku] = photo
    return products


@pytest.fixture(scope="session")
def media_root(clothing_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the photo set to serve as the image root: uploads are stored under the image
    root, and tests must never write into ../shared."""
    root = tmp_path_factory.mktemp("media")
    for split in ("train", "test"):
        shutil.copytree(clothing_dataset / split, root / split)
    return root


@pytest.fixture(scope="module")
def api_settings(
    create_database: Callable[[], str], make_settings: Callable[..., Settings], media_root: Path
) -> Settings:
    return make_settings(
        database_url=create_database(),
        admin_token=ADMIN_TOKEN,
        allow_private_urls=True,
        fetch_timeout_s=1.0,
        fetch_retries=0,
        image_root=media_root,
        # Admission control has its own tests (tests/api/test_overload.py); concurrent tests here
        # must not turn into 503s when the shared test machine runs slow.
        max_inflight=64,
    )


@pytest.fixture(scope="module")
def api(api_settings: Settings, clothing_dataset: Path) -> Iterator[Api]:
    with running_api(api_settings) as (client, state):
        yield Api(client, state, seed_catalog(state, clothing_dataset))


@pytest.fixture(scope="module")
def image_server(clothing_dataset: Path) -> Iterator[ImageServer]:
    photo = sorted((clothing_dataset / "test" / "shoes").glob("*.jpg"))[0]
    server = ImageServer(photo.read_bytes())
    yield server
    server.close()
