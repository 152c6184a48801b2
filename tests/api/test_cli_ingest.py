"""The `lookalike ingest` / `reembed` command lines: operator mistakes end in one clear line.
(The full ingest process, including SIGKILL and resume, runs in tests/api/services/test_ingest.py.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from api.settings import Settings
from tests.support import clean_env, run_cli

pytestmark = pytest.mark.slow  # runs CLI processes against a database: not in `make test-fast`


def test_reembed_rejects_an_unknown_model_and_ingest_needs_a_source(
    create_database: Callable[[], str], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    env = clean_env(DATABASE_URL=create_database(), LOOKALIKE_DATA_DIR=str(tmp_path))
    upgraded = run_cli("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr

    unknown = run_cli("reembed", "--model", "ViT-H-99__nope", env=env)
    assert unknown.returncode == 1 and "unknown CLIP model" in unknown.stderr

    same = run_cli("reembed", "--model", "ViT-B-32__openai", env=env)
    assert same.returncode == 0 and "stays vector(512)" in same.stdout
    assert "LOOKALIKE_CLIP_MODEL=ViT-B-32__openai" in same.stdout

    nothing = run_cli("ingest", env=env)
    assert nothing.returncode == 1 and "--embed-only" in nothing.stderr
    odd = run_cli("ingest", str(tmp_path / "nope.txt"), env=env)
    assert odd.returncode == 1 and "not a folder" in odd.stderr


def test_ingest_help_lists_the_options() -> None:
    shown = run_cli("ingest", "--help", env=clean_env())
    for option in ("--category-from-folder", "--embed-only", "--retry-failed", "--batch-size", "--lanes"):
        assert option in shown.stdout


def test_ingest_refuses_lanes_out_of_range() -> None:
    for lanes in ("0", "33", "two"):
        refused = run_cli("ingest", "--embed-only", "--lanes", lanes, env=clean_env())
        assert refused.returncode == 2 and "--lanes" in refused.stderr, refused.stderr
