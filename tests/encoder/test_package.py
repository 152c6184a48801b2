"""The encoder package sets torch's OpenMP spin policy before torch loads, from every entry point."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import REPO_ROOT, clean_env

pytestmark = pytest.mark.slow  # imports torch in fresh processes: not in `make test-fast`

# Imports the entry point, then torch (if the entry point has not already loaded it, as the
# API does lazily), recording GOMP_SPINCOUNT at the moment torch first loads: libgomp reads it
# only then.
SPY = """
import builtins, json, os, sys
seen = {}
real_import = builtins.__import__
def spy(name, *args, **kwargs):
    if name.split('.')[0] == 'torch' and 'torch' not in sys.modules and 'torch' not in seen:
        seen['torch'] = os.environ.get('GOMP_SPINCOUNT')
    return real_import(name, *args, **kwargs)
builtins.__import__ = spy
import %s
import torch
print(json.dumps(seen))
"""


def _spin_count_when_torch_loads(module: str, env: dict[str, str]) -> dict[str, str | None]:
    result = subprocess.run(
        [sys.executable, "-c", SPY % module],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("entry", ["api.cli", "api.main", "encoder.service", "encoder.factory"])
def test_spin_policy_is_set_before_torch_loads(entry: str) -> None:
    env = {k: v for k, v in clean_env().items() if k != "GOMP_SPINCOUNT"}
    assert _spin_count_when_torch_loads(entry, env) == {"torch": "10000"}


def test_a_value_in_the_environment_wins() -> None:
    env = clean_env(GOMP_SPINCOUNT="0")
    assert _spin_count_when_torch_loads("encoder.factory", env) == {"torch": "0"}
