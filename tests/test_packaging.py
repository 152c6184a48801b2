"""Issue 14, item 10: a non-editable install (a wheel) migrates, serves and ingests.

Before, the migrations were found only beside an editable checkout, so ``pip install .`` could not
run ``lookalike db upgrade``. This is the CI step for it (``make test`` runs the whole suite):
build a wheel from a copy of the sources, install it into a fresh venv, and run the installed
``lookalike`` from outside the checkout. The fresh venv reuses this venv's dependencies through a
``.pth`` line (a plain path entry: the editable install's own ``.pth`` hooks there are *not*
processed), so the only ``api`` package it can import is the wheel's.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tomllib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from PIL import Image

from api.db.migrate import head_revision
from tests.support import REPO_ROOT, clean_env, free_port, wait_for_http

SOURCES = ("api", "encoder", "migrations", "pyproject.toml", "README.md", "alembic.ini")
FIRST_PARTY = {"api", "encoder", "migrations"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules() -> dict[str, str]:
    """Top-level modules the shipped code imports (lazy imports in functions included) -> a file."""
    found: dict[str, str] = {}
    for package in FIRST_PARTY:
        for file in (REPO_ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(file.read_text(), str(file))):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    found.setdefault(name.split(".")[0], str(file.relative_to(REPO_ROOT)))
    return found


def test_every_imported_package_is_declared() -> None:
    """A wheel installs only what pyproject.toml declares: tqdm was imported but never declared."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    declared = {_normalise(re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0]) for req in requirements}
    distributions = importlib.metadata.packages_distributions()
    missing = []
    for module, where in sorted(imported_modules().items()):
        if module in sys.stdlib_module_names or module in FIRST_PARTY or module == "__future__":
            continue
        candidates = {_normalise(d) for d in distributions.get(module, [])} or {_normalise(module)}
        if not candidates & declared:
            missing.append(f"{module} (imported in {where}; distributions: {sorted(candidates)})")
    assert not missing, "imported but not declared in pyproject.toml: " + "; ".join(missing)


def build_wheel(tmp: Path) -> Path:
    source = tmp / "src"
    source.mkdir()
    for name in SOURCES:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(
                path, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        else:
            shutil.copy2(path, source / name)
    dist = tmp / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, source],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("lookalike-*.whl")
    return wheel


def install(wheel: Path, tmp: Path) -> Path:
    """A fresh venv holding the wheel; dependencies come from this venv (no network needed)."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            venv / "bin" / "python",
            "install",
            "-q",
            "--no-deps",
            wheel,
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "zz_lookalike_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


@pytest.mark.slow
def test_a_wheel_install_migrates_serves_and_ingests(
    tmp_path: Path, create_database: Callable[[], str]
) -> None:
    wheel = build_wheel(tmp_path)
    venv = install(wheel, tmp_path)
    work = tmp_path / "elsewhere"  # not the checkout: nothing importable from the working directory
    work.mkdir()
    python, lookalike = venv / "bin" / "python", venv / "bin" / "lookalike"

    where = subprocess.run(
        [python, "-c", "import api.db.migrate as m; print(m.__file__); print(m.MIGRATIONS_DIR)"],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert Path(where[0]).is_relative_to(venv), f"imported {where[0]}, not the wheel"
    migrations = Path(where[1])
    assert migrations.is_dir() and not migrations.is_symlink() and (migrations / "env.py").is_file()

    env = clean_env(
        DATABASE_URL=create_database(),
        LOOKALIKE_DATA_DIR=str(tmp_path / "data"),
        LOOKALIKE_CLIP_RANDOM_WEIGHTS="true",
        LOOKALIKE_CLIP_RUNTIME="torch",
        LOOKALIKE_PREWARM="false",
        LOOKALIKE_ADMIN_TOKEN="packaging-test",
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [lookalike, *args], cwd=work, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, f"lookalike {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result

    run("db", "upgrade")
    current = run("db", "current")
    assert head_revision() in current.stdout + current.stderr

    photos = work / "photos" / "dress"
    photos.mkdir(parents=True)
    for i, color in enumerate(("red", "navy")):
        Image.new("RGB", (96, 128), color).save(photos / f"p{i}.jpg")
    ingest = run("ingest", str(work / "photos"), "--category-from-folder")
    assert "2" in ingest.stdout + ingest.stderr

    port = free_port()
    server = subprocess.Popen(
        [lookalike, "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        health = wait_for_http(f"{base}/api/v1/health", server, timeout=180)
        assert health.status_code == 200, health.text
        assert httpx.get(f"{base}/").status_code == 200  # the web UI ships as package data too
        products = httpx.get(f"{base}/api/v1/categories").json()
        assert {"name": "dress", "count": 2} in products["categories"]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
