"""Find the checkpoint file for a CLIP spec before building anything.

Resolving weights first -- local cache, then a quick reachability probe, then the normal
open_clip download -- is what lets a missing checkpoint fail in seconds with a message
that names the fix, instead of open_clip's minute of retries and a generic RuntimeError.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip

from encoder.errors import EncoderUnavailableError
from encoder.netcheck import hf_endpoint, hf_offline_forced, host_reachable
from encoder.registry import ClipModelSpec

_HF_WEIGHTS = "open_clip_pytorch_model.bin"
_HF_SAFE_WEIGHTS = "open_clip_model.safetensors"
_FIX_HINT = "set LOOKALIKE_CLIP_WEIGHTS_PATH to a local checkpoint"


@dataclass(frozen=True)
class ResolvedWeights:
    model_name: str
    """What to pass to open_clip as the model name (arch, or ``local-dir:``/``hf-hub:`` reference)."""
    pretrained: str | None
    """A local checkpoint file for open_clip's ``pretrained`` argument (None: the name carries it)."""
    source: str
    """Human-readable provenance for /health: ``pretrained:<tag>``, ``file:<path>``, ``hf-hub:<id>``."""


def tag_config(spec: ClipModelSpec) -> dict[str, Any]:
    """open_clip's pretrained config for the spec's tag (mean/std/interpolation/quick_gelu/...)."""
    if spec.pretrained is None:
        return {}
    cfg = open_clip.get_pretrained_cfg(spec.arch, spec.pretrained)
    if not cfg:
        raise EncoderUnavailableError(
            f"open_clip {open_clip.__version__} has no pretrained tag {spec.pretrained!r} for {spec.arch}"
        )
    return dict(cfg)


def resolve_weights(
    spec: ClipModelSpec, weights_path: Path | None, cache_dir: str | None = None
) -> ResolvedWeights:
    """Locate weights for ``spec``, downloading only when the network is actually there."""
    if weights_path is not None:
        return _from_local_path(spec, Path(weights_path))
    if spec.arch.startswith("hf-hub:"):
        return _from_hf_hub_model(spec, cache_dir)
    cfg = tag_config(spec)
    assert spec.pretrained is not None  # registry invariant: non-hf-hub specs carry a tag
    cached = _cached_tag_file(cfg, cache_dir)
    if cached is not None:
        return ResolvedWeights(spec.arch, cached, f"pretrained:{spec.pretrained}")
    url = hf_endpoint() if cfg.get("hf_hub") else cfg.get("url", "")
    if hf_offline_forced() and cfg.get("hf_hub"):
        raise _unavailable(spec, "HF_HUB_OFFLINE is set and the checkpoint is not in the local cache")
    if not url or not host_reachable(url):
        raise _unavailable(spec, "(offline?)")
    try:
        path = open_clip.download_pretrained(cfg, cache_dir=cache_dir)
    except Exception as exc:
        raise _unavailable(spec, f"({exc})") from exc
    if not path:
        raise _unavailable(spec, "(open_clip returned no file)")
    return ResolvedWeights(spec.arch, str(path), f"pretrained:{spec.pretrained}")


def _unavailable(spec: ClipModelSpec, why: str) -> EncoderUnavailableError:
    what = spec.pretrained or spec.arch
    return EncoderUnavailableError(
        f"weights unavailable: could not download {what!r} for {spec.arch} {why} — {_FIX_HINT}"
    )


def _from_local_path(spec: ClipModelSpec, path: Path) -> ResolvedWeights:
    if path.is_dir():
        # An exported open_clip folder (open_clip_config.json + weights), e.g. an hf-hub model
        # copied to an offline machine.
        if not (path / "open_clip_config.json").is_file():
            raise EncoderUnavailableError(
                f"weights unavailable: {path} is a directory without open_clip_config.json"
            )
        return ResolvedWeights(f"local-dir:{path}", None, f"file:{path}")
    if not path.is_file():
        raise EncoderUnavailableError(
            f"weights unavailable: LOOKALIKE_CLIP_WEIGHTS_PATH={path} does not exist"
        )
    if spec.arch.startswith("hf-hub:"):
        raise EncoderUnavailableError(
            f"weights unavailable: {spec.name} needs its config too; point "
            "LOOKALIKE_CLIP_WEIGHTS_PATH at a folder with open_clip_config.json and the weights"
        )
    return ResolvedWeights(spec.arch, str(path), f"file:{path}")


def _from_hf_hub_model(spec: ClipModelSpec, cache_dir: str | None) -> ResolvedWeights:
    repo_id = spec.arch.removeprefix("hf-hub:")
    cached = _hf_cached(repo_id, "open_clip_config.json", cache_dir)
    if cached is None and (hf_offline_forced() or not host_reachable(hf_endpoint())):
        raise EncoderUnavailableError(
            f"weights unavailable: could not download {repo_id!r} from the Hugging Face Hub "
            f"(offline?) — set LOOKALIKE_CLIP_WEIGHTS_PATH to a local open_clip folder"
        )
    return ResolvedWeights(spec.arch, None, f"hf-hub:{repo_id}")


def _cached_tag_file(cfg: dict[str, Any], cache_dir: str | None) -> str | None:
    """The tag's checkpoint if a previous run already downloaded it (no network involved)."""
    hub = cfg.get("hf_hub", "")
    if hub:
        repo_id, filename = os.path.split(hub)
        filename = filename or _HF_WEIGHTS
        candidates = [_HF_SAFE_WEIGHTS] if filename == _HF_WEIGHTS else []
        if filename.endswith((".bin", ".pth")) and filename != _HF_WEIGHTS:
            candidates.append(filename[:-4] + ".safetensors")
        candidates.append(filename)
        for candidate in candidates:
            found = _hf_cached(repo_id, candidate, cache_dir)
            if found is not None:
                return found
    url = cfg.get("url", "")
    if url:
        target = Path(cache_dir or os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if target.is_file():
            return str(target)
    return None


def _hf_cached(repo_id: str, filename: str, cache_dir: str | None) -> str | None:
    try:
        from huggingface_hub import hf_hub_download

        return str(hf_hub_download(repo_id, filename, cache_dir=cache_dir, local_files_only=True))
    except Exception:
        return None
