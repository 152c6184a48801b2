"""A due CLIP re-load runs on a background thread: the request that notices it is answered at
once (fallback modes) instead of waiting for the load, which can take a minute."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from api.services.encoders import RELOAD_AFTER_S, EncoderHub
from api.settings import Settings
from encoder.circuit import ManualClock
from encoder.errors import EncoderUnavailableError


def test_a_due_clip_reload_does_not_hold_the_request(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    clock = ManualClock()
    hub = EncoderHub(
        make_settings(clip_random_weights=False, clip_weights_path=tmp_path / "missing.pt"), clock=clock
    )
    hub.load()
    try:
        with pytest.raises(EncoderUnavailableError, match="does not exist"):
            hub.clip()
        # The weights "arrive" (random weights: a real model build of a few seconds) and a re-load is due.
        hub.settings = hub.clip_loader.settings = make_settings()
        clock.advance(RELOAD_AFTER_S + 1)
        started = time.monotonic()
        with pytest.raises(EncoderUnavailableError):
            hub.clip()  # answered from the last known state while the load runs elsewhere
        request_s = time.monotonic() - started
        while True:
            try:
                clip = hub.clip()
                break
            except EncoderUnavailableError:
                assert time.monotonic() - started < 300
                time.sleep(0.05)
        load_s = time.monotonic() - started
        assert clip.model_id == hub.settings.clip_model
        assert request_s < load_s / 4, (request_s, load_s)
        assert not hub.clip_loader.reloading
    finally:
        hub.close()
