"""A real ``lookalike serve`` process for browser tests, and a small catalog built through its API."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support import LOOKALIKE, REPO_ROOT, clean_env, free_port, wait_for_http

ADMIN_TOKEN = "web-test-token"
MAX_UPLOAD_BYTES = 2_000_000
CLASSES = ("dress", "hat", "longsleeve", "outwear", "pants", "shirt", "shoes", "shorts", "skirt", "t-shirt")
PER_CLASS = 8
COLOURS = ("Red", "Blue", "Green", "Black")


@dataclass
class Server:
    url: str
    log: Path


@dataclass
class Catalog:
    skus: dict[str, list[str]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(len(v) for v in self.skus.values())


def server_env(database_url: str, data_dir: Path, **overrides: str) -> dict[str, str]:
    values = {
        "DATABASE_URL": database_url,
        "LOOKALIKE_CLIP_RANDOM_WEIGHTS": "1",
        "LOOKALIKE_ADMIN_TOKEN": ADMIN_TOKEN,
        "LOOKALIKE_DATA_DIR": str(data_dir),
        "LOOKALIKE_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
        "LOOKALIKE_MAX_INFLIGHT": "16",  # a page's parallel requests; admission: tests/api/test_overload.py
    }
    values.update(overrides)
    return clean_env(**values)


@contextmanager
def serve(env: dict[str, str], log: Path) -> Iterator[Server]:
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*LOOKALIKE, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for_http(f"{url}/api/v1/health", process, timeout=180)
            yield Server(url, log)
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def title(category: str) -> str:
    return category.replace("-", " ").capitalize()


def build_catalog(url: str, dataset: Path) -> Catalog:
    """8 photos per class from the train split, with names, prices and one attribute."""
    catalog = Catalog()
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        for category in CLASSES:
            photos = sorted((dataset / "train" / category).glob("*.jpg"))[:PER_CLASS]
            for index, photo in enumerate(photos):
                sku = f"{category}-{photo.stem[:8]}"
                fields = {
                    "sku": sku,
                    # A colour word in every name: fallback photo + words searches re-rank by it.
                    "name": f"{COLOURS[index % len(COLOURS)]} {title(category).lower()} No. {index + 1}",
                    "description": f"A {category.replace('-', ' ')} from the clothing-small dataset",
                    "category": category,
                    "price": str(12 + (index * 17 + len(category) * 5) % 140),
                    "attributes": '{"fit": "%s"}' % ("relaxed" if index % 2 else "regular"),
                }
                response = client.post(
                    "/api/v1/products",
                    data=fields,
                    files={"file": (photo.name, photo.read_bytes(), "image/jpeg")},
                )
                assert response.status_code in (200, 201), response.text
                catalog.skus.setdefault(category, []).append(sku)
    return catalog
