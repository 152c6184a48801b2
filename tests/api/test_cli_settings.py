"""A bad LOOKALIKE_* value ends any command with one clear line per setting, exit 2, no traceback."""

from __future__ import annotations

from tests.support import clean_env, run_cli


def test_bad_settings_are_named_in_one_line_each() -> None:
    refused = run_cli(
        "db", "current", env=clean_env(LOOKALIKE_CATEGORY_INDEX_MAX="abc", LOOKALIKE_HNSW_M="1")
    )
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert lines == [
        "lookalike: error: LOOKALIKE_CATEGORY_INDEX_MAX: Input should be a valid integer, unable to parse "
        "string as an integer (got 'abc')",
        "lookalike: error: LOOKALIKE_HNSW_M: Input should be greater than or equal to 2 (got '1')",
    ]


def test_settings_that_do_not_fit_together_are_refused_before_any_work() -> None:
    refused = run_cli(
        "db", "rebuild-graphs", env=clean_env(LOOKALIKE_HNSW_M="32", LOOKALIKE_HNSW_EF_CONSTRUCTION="40")
    )
    assert refused.returncode == 2
    assert "LOOKALIKE_HNSW_EF_CONSTRUCTION (40) must be at least 2 x LOOKALIKE_HNSW_M (64)" in refused.stderr
    assert "Traceback" not in refused.stderr
