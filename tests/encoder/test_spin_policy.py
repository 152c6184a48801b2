"""OpenMP's spin cap is for processes where ONNX Runtime and torch share cores, not for all-torch ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _spin_after_import(cwd: Path, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "LOOKALIKE_CLIP_RUNTIME")}
    result = subprocess.run(
        [sys.executable, "-c", "import encoder, os; print(os.environ.get('GOMP_SPINCOUNT', 'default'))"],
        cwd=cwd,
        env={**clean, "PYTHONPATH": str(REPO_ROOT), **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


@pytest.mark.parametrize(
    ("runtime", "spin"),
    [(None, "10000"), ("auto", "10000"), ("onnx-int8", "10000"), ("openvino", "10000"), ("torch", "default")],
)
def test_spin_is_capped_unless_clip_runs_on_torch(tmp_path: Path, runtime: str | None, spin: str) -> None:
    env = {} if runtime is None else {"LOOKALIKE_CLIP_RUNTIME": runtime}
    assert _spin_after_import(tmp_path, **env) == spin


def test_runtime_from_dotenv_counts_and_environment_wins(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LOOKALIKE_DEVICE=cpu\nLOOKALIKE_CLIP_RUNTIME='torch'\n")
    assert _spin_after_import(tmp_path) == "default"
    assert _spin_after_import(tmp_path, LOOKALIKE_CLIP_RUNTIME="onnx") == "10000"
    assert _spin_after_import(tmp_path, GOMP_SPINCOUNT="42") == "42"
