"""Issue 14, item 9: schemathesis (``--checks all``) over the running service finds no server error
and no mismatch between /openapi.json and what the service answers.

The real service (real PostgreSQL, real encoders, a small real catalog) runs under uvicorn in this
process; the schemathesis CLI (pinned in the dev dependencies) runs against it as a separate
process with the admin token, a fixed seed and a bounded number of examples per operation.
``tests/api/schemathesis.toml`` holds the few documented cases where a schema cannot say what the
service must refuse (e.g. that a base64 string must also be a decodable photo); nothing else is
excluded.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from api.main import build_state, create_app
from api.settings import Settings
from tests.api.conftest import ADMIN_TOKEN
from tests.live_api import serve_in_thread

CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES_PER_OPERATION = 30


@pytest.fixture(scope="module")
def service_url(
    create_database: Callable[[], str],
    make_settings: Callable[..., Settings],
    clothing_dataset: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    media = tmp_path_factory.mktemp("media")
    settings = make_settings(
        database_url=create_database(),
        admin_token=ADMIN_TOKEN,
        image_root=media,
        fetch_retries=0,
        fetch_timeout_s=1.0,
    )
    photos = sorted((clothing_dataset / "train" / "dress").glob("*.jpg"))[:2]
    state = build_state(settings)
    try:
        for i, photo in enumerate(photos):
            (media / photo.name).write_bytes(photo.read_bytes())
            fields = {"name": f"Dress {i}", "category": "dress", "price": 20 + i, "image_url": photo.name}
            state.products.upsert(f"DR-{i}", fields, photo.read_bytes())
        with serve_in_thread(create_app(settings, state)) as base_url:
            yield base_url
    finally:
        state.close()


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_spec_mismatch(service_url: str, tmp_path: Path) -> None:
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(CONFIG),
        "run",
        f"{service_url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--workers",
        "1",
        "--seed",
        "14",
        "--generation-database",
        "none",
        "--header",
        f"Authorization: Bearer {ADMIN_TOKEN}",
        "--request-timeout",
        "30",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    # cwd: schemathesis keeps a cache of past failures in ./.schemathesis; each run starts clean.
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-20_000:]
