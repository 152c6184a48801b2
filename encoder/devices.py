"""Where tensors run, decided once per encoder so every model in a process agrees."""

from __future__ import annotations

import os

import torch

from encoder.errors import EncoderUnavailableError

_threads_configured = False


def resolve_device(device: str) -> str:
    """Map ``auto``/``cpu``/``cuda[:n]`` to a concrete torch device string.

    An explicit ``cuda`` on a machine without CUDA is an operator error that would otherwise
    surface as an obscure tensor error at the first request, so it fails at startup instead.
    """
    requested = device.strip().lower()
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cpu":
        return "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise EncoderUnavailableError(f"device {device!r} requested but CUDA is not available")
        return requested
    raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'")


def is_cuda(device: str) -> bool:
    return device.startswith("cuda")


def gpu_mode_for(device: str, requested: bool | None) -> bool:
    """GPU mode (fp16 CLIP, preprocessing on the device) is on by default exactly on CUDA."""
    return is_cuda(device) if requested is None else requested


def configure_cpu_threads() -> int:
    """Use every core this process may run on for intra-op parallelism, once per process.

    torch defaults to the machine's physical core count, which over-subscribes containers
    pinned to fewer CPUs; an explicit ``OMP_NUM_THREADS``/``torch.set_num_threads`` wins.
    """
    global _threads_configured
    if not _threads_configured and "OMP_NUM_THREADS" not in os.environ:
        try:
            available = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            available = os.cpu_count() or 1
        torch.set_num_threads(max(1, available))
    _threads_configured = True
    return torch.get_num_threads()
