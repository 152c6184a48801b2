"""A crop box on image queries: the search runs on the part of the photo the caller means."""

from __future__ import annotations

import hashlib
import io
import json

import pytest
from PIL import Image

from tests.api.conftest import Api, b64

pytestmark = pytest.mark.slow  # embeds and searches photo crops: not in `make test-fast`


def side_by_side(left: bytes, right: bytes) -> tuple[bytes, int, int, int]:
    """Two catalog photos in one JPEG, each at its own size; returns (jpeg, left width, width, height)."""
    a = Image.open(io.BytesIO(left)).convert("RGB")
    b = Image.open(io.BytesIO(right)).convert("RGB")
    height = max(a.height, b.height)
    canvas = Image.new("RGB", (a.width + b.width, height), "white")
    canvas.paste(a, (0, 0))
    canvas.paste(b, (a.width, 0))
    out = io.BytesIO()
    canvas.save(out, format="JPEG", quality=95)
    return out.getvalue(), a.width, canvas.width, height


def first_skus(api: Api, **body: object) -> list[str]:
    response = api.client.post("/api/v1/search", json={"top_k": 5, **body})
    assert response.status_code == 200, response.text
    return [hit["sku"] for hit in response.json()["results"]]


def test_cropping_either_half_finds_that_product(api: Api) -> None:
    photo, split, width, height = side_by_side(api.image("shoes-1"), api.image("dress-2"))
    image = b64(photo)
    left = first_skus(api, image=image, crop={"x": 0, "y": 0, "width": split, "height": height})
    right = first_skus(api, image=image, crop={"x": split, "y": 0, "width": width - split, "height": height})
    whole = first_skus(api, image=image)
    assert left[0] == "shoes-1"
    assert right[0] == "dress-2"
    assert whole != left and whole != right


def test_multipart_crop_matches_the_json_crop(api: Api) -> None:
    photo, split, _, height = side_by_side(api.image("hat-0"), api.image("pants-1"))
    crop = {"x": 0, "y": 0, "width": split, "height": height}
    by_json = first_skus(api, image=b64(photo), crop=crop)
    response = api.client.post(
        "/api/v1/search/image",
        files={"file": ("two.jpg", photo, "image/jpeg")},
        data={"top_k": "5", "crop": json.dumps(crop)},
    )
    assert response.status_code == 200, response.text
    assert [hit["sku"] for hit in response.json()["results"]] == by_json
    assert by_json[0] == "hat-0"


def test_a_crop_of_the_whole_photo_is_the_photo(api: Api) -> None:
    data = api.image("skirt-0")
    width, height = Image.open(io.BytesIO(data)).size
    whole = api.client.post("/api/v1/search", json={"image": b64(data), "top_k": 5}).json()
    cropped = api.client.post(
        "/api/v1/search",
        json={"image": b64(data), "top_k": 5, "crop": {"x": 0, "y": 0, "width": width, "height": height}},
    ).json()
    assert [h["sku"] for h in cropped["results"]] == [h["sku"] for h in whole["results"]]
    assert cropped["cached"]  # the same bytes: the same cache entry


@pytest.mark.parametrize(
    ("crop", "code"),
    [
        ({"x": 0, "y": 0, "width": 100_000, "height": 10}, "crop_outside_image"),
        ({"x": 5000, "y": 0, "width": 10, "height": 10}, "crop_outside_image"),
        ({"x": -1, "y": 0, "width": 10, "height": 10}, "invalid_request"),
        ({"x": 0, "y": 0, "width": 0, "height": 10}, "invalid_request"),
        ({"x": 0, "y": 0, "width": 10}, "invalid_request"),
    ],
)
def test_a_box_outside_the_photo_is_a_4xx(api: Api, crop: dict[str, int], code: str) -> None:
    data = api.image("shirt-0")
    response = api.client.post("/api/v1/search", json={"image": b64(data), "crop": crop})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
    form = api.client.post(
        "/api/v1/search/image", files={"file": ("q.jpg", data, "image/jpeg")}, data={"crop": json.dumps(crop)}
    )
    assert form.status_code == 422, form.text
    assert form.json()["error"]["code"] == code


def test_a_crop_needs_a_photo(api: Api) -> None:
    response = api.client.post(
        "/api/v1/search", json={"text": "red", "crop": {"x": 0, "y": 0, "width": 1, "height": 1}}
    )
    assert response.status_code == 422
    assert "crop needs an image" in response.json()["error"]["message"]
    form = api.client.post(
        "/api/v1/search/image", files={"file": ("q.jpg", b"x", "image/jpeg")}, data={"crop": "not json"}
    )
    assert form.status_code in (400, 422) and form.json()["error"]["code"]


def test_a_photo_the_server_has_seen_is_searchable_by_its_sha256(api: Api) -> None:
    """Shared search links name the photo by hash: they work while the server still has it."""
    data = api.image("longsleeve-1")
    sha = hashlib.sha256(data).hexdigest()
    by_bytes = first_skus(api, image=b64(data))
    assert first_skus(api, image_sha256=sha) == by_bytes
    # The photo's embedding is kept, so the same photo with other words or filters works too.
    hybrid = api.client.post("/api/v1/search", json={"image_sha256": sha, "text": "red", "top_k": 5})
    assert hybrid.status_code == 200 and hybrid.json()["mode"] == "hybrid"
    unknown = api.client.post("/api/v1/search", json={"image_sha256": "0" * 64})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "photo_not_available"
    both = api.client.post("/api/v1/search", json={"image_sha256": sha, "image": b64(data)})
    assert both.status_code == 422
