"""Product images and their vectors stay in step: a removed image takes its vectors with it, a
changed one recomputes them, a bad upload leaves no file behind, and concurrent uploads of one
photo all succeed (they once raced for one temporary file name)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from api.services.images.storage import save_image
from api.settings import Settings
from tests.api.conftest import ADMIN, ADMIN_TOKEN, PER_CLASS, Api, b64, running_api, seed_catalog

pytestmark = pytest.mark.slow  # embeds through the full write path: not in `make test-fast`


@pytest.fixture(scope="module")
def media_root(clothing_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The catalog's photos copied into a media root of this module's own, so the uploads these
    tests make are stored there and never beside the shared dataset."""
    root = tmp_path_factory.mktemp("media")
    for class_dir in sorted(p for p in (clothing_dataset / "train").iterdir() if p.is_dir()):
        target = root / "train" / class_dir.name
        target.mkdir(parents=True)
        for photo in sorted(class_dir.glob("*.jpg"))[:PER_CLASS]:
            shutil.copyfile(photo, target / photo.name)
    return root


@pytest.fixture(scope="module")
def api(
    create_database: Callable[[], str], make_settings: Callable[..., Settings], media_root: Path
) -> Iterator[Api]:
    settings = make_settings(
        database_url=create_database(), admin_token=ADMIN_TOKEN, image_root=media_root, max_inflight=64
    )
    with running_api(settings) as (client, state):
        yield Api(client, state, seed_catalog(state, media_root))


def image_search(api: Api, image: bytes) -> list[dict]:
    response = api.client.post("/api/v1/search", json={"image": b64(image), "top_k": 100})
    assert response.status_code == 200, response.text
    return response.json()["results"]


def test_patch_image_url_null_clears_the_vectors_and_a_new_image_recomputes_them(
    api: Api, media_root: Path
) -> None:
    old_photo = api.image("hat-1")
    assert image_search(api, old_photo)[0]["sku"] == "hat-1"

    cleared = api.client.patch("/api/v1/products/hat-1", json={"image_url": None}, headers=ADMIN)
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["image_url"] is None
    assert "hat-1" not in {hit["sku"] for hit in image_search(api, old_photo)}  # not by its old photo

    new_photo = api.products["dress-2"]
    changed = api.client.patch(
        "/api/v1/products/hat-1",
        json={"image_url": str(new_photo.relative_to(media_root))},
        headers=ADMIN,
    )
    assert changed.status_code == 200, changed.text
    hits = image_search(api, new_photo.read_bytes())
    assert {hits[0]["sku"], hits[1]["sku"]} == {"hat-1", "dress-2"}  # the same photo, twice
    assert image_search(api, old_photo)[0]["sku"] != "hat-1"


def uploads(settings: Settings) -> set[str]:
    folder = settings.media_dir / "uploads"
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def test_a_bad_upload_leaves_no_file_and_a_good_one_is_kept(api: Api) -> None:
    before = uploads(api.state.settings)
    bad = api.client.post(
        "/api/v1/products",
        data={"sku": "bad-upload", "name": "Bad"},
        files={"file": ("x.jpg", b"\xff\xd8\xff\xe0 this is no jpeg" * 20, "image/jpeg")},
        headers=ADMIN,
    )
    assert bad.status_code == 422, bad.text
    assert uploads(api.state.settings) == before
    assert api.client.get("/api/v1/products/bad-upload").status_code == 404

    good = api.client.post(
        "/api/v1/products",
        data={"sku": "good-upload", "name": "Good"},
        files={"file": ("x.jpg", api.image("shoes-2"), "image/jpeg")},
        headers=ADMIN,
    )
    assert good.status_code == 201, good.text
    assert len(uploads(api.state.settings) - before) == 1  # a fresh media root: nothing was there
    assert (api.state.settings.media_dir / good.json()["image_url"]).is_file()


def test_40_concurrent_uploads_of_one_photo_all_succeed(api: Api) -> None:
    photo = api.image("skirt-2")

    def upload(i: int) -> int:
        response = api.client.post(
            "/api/v1/products",
            data={"sku": f"same-photo-{i}", "name": f"Same photo {i}"},
            files={"file": ("same.jpg", photo, "image/jpeg")},
            headers=ADMIN,
        )
        return response.status_code

    with ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(upload, range(40)))
    assert statuses == [201] * 40
    folder = api.state.settings.media_dir / "uploads"
    assert not list(folder.glob("*.partial"))  # every writer renamed its own temporary file


def test_40_threads_saving_one_image_write_one_file(tmp_path: Path, make_settings: object) -> None:
    settings = make_settings(image_root=tmp_path / "media")  # type: ignore[operator]
    data = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4000
    with ThreadPoolExecutor(40) as pool:
        paths = set(pool.map(lambda _: save_image(data, settings), range(40)))
    (relative,) = paths
    stored = settings.media_dir / relative
    assert stored.read_bytes() == data
    assert [p.name for p in stored.parent.iterdir()] == [stored.name]
