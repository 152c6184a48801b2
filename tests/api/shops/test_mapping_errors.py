"""A mapping that does not fit the shop's table stops `lookalike db upgrade` (and `serve`) in one
line that names the setting and the database's reason, exit code 2, with nothing written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.api.shops.schemas import MEDUSA, photos
from tests.support import clean_env, run_cli

BASE = {k: v for k, v in MEDUSA.env().items()}

CASES = {
    "unknown column": ({"LOOKALIKE_FIELD_NAME": "titel"}, "LOOKALIKE_FIELD_NAME", "titel"),
    "expression error": (
        {"LOOKALIKE_FIELD_CATEGORY": "(select handle from nowhere where id = product.id)"},
        "LOOKALIKE_FIELD_CATEGORY",
        "nowhere",
    ),
    "wrong type": ({"LOOKALIKE_FIELD_PRICE": "title"}, "LOOKALIKE_FIELD_PRICE", "not a number"),
    "fails on the data": (
        {"LOOKALIKE_FIELD_CATEGORY": "(select handle from product_category)"},
        "LOOKALIKE_FIELD_CATEGORY",
        "more than one row",
    ),
    "non-boolean predicate": (
        {"LOOKALIKE_VISIBLE_WHERE": "status"},
        "LOOKALIKE_VISIBLE_WHERE",
        "not boolean",
    ),
    "missing table": ({"LOOKALIKE_PRODUCTS_TABLE": "produkt"}, "LOOKALIKE_PRODUCTS_TABLE", "does not exist"),
    "unknown language": ({"LOOKALIKE_TEXT_LANGUAGE": "klingon"}, "LOOKALIKE_TEXT_LANGUAGE", "klingon"),
    "key that is not unique": ({"LOOKALIKE_KEY_COLUMN": "status"}, "LOOKALIKE_KEY_COLUMN", "not unique"),
}


@pytest.fixture(scope="module")
def shop_url(
    create_database: Callable[[], str], clothing_dataset: Path, tmp_path_factory: pytest.TempPathFactory
) -> str:
    url = create_database()
    engine = create_engine(url)
    with engine.begin() as conn:
        MEDUSA.create(conn, photos(clothing_dataset)[:6], tmp_path_factory.mktemp("media"))
    engine.dispose()
    return url


def schema_state(url: str) -> tuple[object, ...]:
    engine = create_engine(url)
    with engine.connect() as conn:
        columns = conn.execute(
            text("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public'")
        ).scalar_one()
        tables = conn.execute(text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")).scalar_one()
        functions = conn.execute(
            text(
                "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'"
            )
        ).scalar_one()
    engine.dispose()
    return columns, tables, functions


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_mapping_fails_in_one_line_with_exit_2_and_writes_nothing(
    case: str, shop_url: str, tmp_path: Path
) -> None:
    overrides, setting, reason = CASES[case]
    before = schema_state(shop_url)
    env = clean_env(**{**BASE, **overrides}, DATABASE_URL=shop_url, LOOKALIKE_DATA_DIR=str(tmp_path))
    result = run_cli("db", "upgrade", env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("lookalike: error:")]
    assert len(errors) == 1, result.stderr
    assert setting in errors[0] and reason in errors[0], errors[0]
    assert schema_state(shop_url) == before


def test_the_documented_mapping_passes_the_same_check(shop_url: str, tmp_path: Path) -> None:
    env = clean_env(**BASE, DATABASE_URL=shop_url, LOOKALIKE_DATA_DIR=str(tmp_path))
    result = run_cli("db", "upgrade", env=env)
    assert result.returncode == 0, result.stderr
