"""docker-compose.prod.yml, deploy/prometheus.yml and the Dockerfile stay valid without a
container runtime: the YAML parses into the expected shape, every setting they pass exists,
and every command they run parses with the real ``lookalike`` command line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.cli import build_parser
from api.settings import Settings
from tests.support import REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.prod.yml"
INTERPOLATION = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?[-?][^}]*)?\}")


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _resolve(value: str) -> str:
    """Compose-style ``${VAR:-default}`` with the defaults (``${VAR:?msg}`` -> a placeholder)."""

    def one(match: re.Match[str]) -> str:
        text = match.group(0)[2:-1]
        if ":-" in text:
            return text.split(":-", 1)[1]
        return "x"

    return INTERPOLATION.sub(one, value)


def _settings_env_names() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(f"LOOKALIKE_{name.upper()}")
        alias = field.validation_alias
        for choice in getattr(alias, "choices", ()) or ():
            names.add(str(choice))
    return names


def test_compose_services_have_limits_healthchecks_and_the_encoder_apart() -> None:
    services = _compose()["services"]
    assert {"db", "redis", "encoder", "api", "prometheus"} <= set(services)
    for name in ("db", "redis", "encoder", "api"):
        service = services[name]
        limits = service["deploy"]["resources"]["limits"]
        assert float(limits["cpus"]) > 0 and re.fullmatch(r"\d+[mg]", limits["memory"]), name
        assert service["healthcheck"]["test"], name
        assert service["restart"] == "unless-stopped", name
    assert services["api"]["environment"]["LOOKALIKE_ENCODER_URL"].endswith("http://encoder:8001}")
    assert services["api"]["depends_on"]["encoder"]["condition"] == "service_healthy"
    # Every ${...} is well formed (a typo would make compose reject the file).
    text = COMPOSE.read_text()
    assert text.count("${") == len(INTERPOLATION.findall(text))


@pytest.mark.parametrize("service", ["api", "encoder"])
def test_compose_commands_and_settings_are_real(service: str) -> None:
    spec = _compose()["services"][service]
    command = [_resolve(part) for part in spec["command"]]
    assert command[0] == "lookalike"
    build_parser().parse_args(command[1:])  # exits (fails the test) on an unknown option
    known = _settings_env_names() | {"PROMETHEUS_MULTIPROC_DIR"}
    unknown = [name for name in spec["environment"] if name not in known]
    assert not unknown, f"{service} passes settings Lookalike does not have: {unknown}"


def test_prometheus_scrapes_the_api_metrics() -> None:
    services = _compose()["services"]
    mount = services["prometheus"]["volumes"][0].split(":")[0]
    config = yaml.safe_load((REPO_ROOT / mount).read_text())
    job = config["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["api:8000"]


def test_dockerfile_installs_cpu_torch_and_a_non_editable_package() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in dockerfile
    pins = dict(re.findall(r'"(torch|torchvision)==([0-9.]+)"', (REPO_ROOT / "pyproject.toml").read_text()))
    for package, version in pins.items():
        assert f"{package}=={version}" in dockerfile  # the same builds the project pins
    assert "pip install ." in dockerfile and "pip install -e" not in dockerfile
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)
    assert cmd is not None
    argv = yaml.safe_load(cmd.group(1))
    assert argv[0] == "lookalike"
    build_parser().parse_args(argv[1:])
    for copied in re.findall(r"^COPY (\S+)", dockerfile, re.MULTILINE):
        assert (REPO_ROOT / copied).exists(), copied


def test_compose_mounts_that_must_exist_do() -> None:
    for service in _compose()["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./deploy"):
                assert Path(REPO_ROOT / source).exists(), source
