"""Lanes: threads that each claim, decode, encode and write their own batch on their own connection.

Decoding and resizing (Pillow) and the forward passes (torch, ONNX Runtime) release the GIL, so
while one lane's batch is in the model the others decode theirs and write the last one; the
encoders merge the lanes' concurrent calls into shared passes (:class:`encoder.inference.ForwardQueue`).
One batch on one thread leaves every core but one idle during decoding, and a GPU idle during
everything but the forward pass.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from api.services.ingest.batch import StaleWalk
from api.services.ingest.progress import BatchResult, Tally
from api.settings import MAX_EMBED_LANES, Settings
from encoder.devices import is_cuda, resolve_device

NextBatch = Callable[[StaleWalk], BatchResult | None]
"""Claims and embeds one batch of the round ``walk`` belongs to; None when no row needs work."""


def ingest_lanes(settings: Settings, requested: int | None = None) -> int:
    """Lanes for ``lookalike ingest``: ``--lanes``, else ``LOOKALIKE_EMBED_LANES``, else :func:`auto_lanes`."""
    return requested or settings.embed_lanes or auto_lanes(resolve_device(settings.device))


def auto_lanes(device: str) -> int:
    """Lanes for ``lookalike ingest`` when none are asked for.

    On a CPU the encoders already use every core, so a second lane only overlaps one batch's
    decoding and writing with the next one's forward pass; more lanes just contend. On a GPU
    the forward pass is cheap and decoding is the work, so every core but one decodes.
    """
    if is_cuda(device):
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 2
        return max(2, min(cores - 1, MAX_EMBED_LANES))
    return 2


def check_lanes(lanes: int) -> int:
    if not 1 <= lanes <= MAX_EMBED_LANES:
        raise ValueError(f"lanes must be between 1 and {MAX_EMBED_LANES}, not {lanes}")
    return lanes


def drain_lanes(
    next_batch: NextBatch,
    lanes: int,
    stop: threading.Event,
    on_batch: Callable[[BatchResult], None] | None = None,
) -> Tally:
    """Run batches on ``lanes`` lanes until no row needs work (or ``stop`` is set); this run's counts.

    ``on_batch`` is called once per batch, never concurrently. The first error in any lane stops
    the others after the batch in hand (theirs still commit) and is raised here; an error's own
    batch is rolled back, so its rows stay pending.
    """
    tally = Tally()
    halt = threading.Event()
    report = threading.Lock()
    walk = StaleWalk()

    def lane() -> None:
        while not (stop.is_set() or halt.is_set()):
            result = next_batch(walk)
            if result is None:
                return
            with report:
                tally.add_batch(result)
                if on_batch is not None:
                    on_batch(result)

    if lanes == 1:
        lane()
    else:
        _run_lanes(lane, lanes, halt)
    return tally


def _run_lanes(lane: Callable[[], None], count: int, halt: threading.Event) -> None:
    """Run ``lane`` on ``count`` threads; the first error halts the rest and is raised here.

    Interrupting the caller (Ctrl-C, SIGTERM via ``sys.exit``) also halts them: each lane
    finishes or abandons the batch in hand, and the caller's exit path (say, rebuilding
    indexes set aside) runs only once no lane is still writing.
    """
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            lane()
        except BaseException as exc:
            errors.append(exc)
            halt.set()

    threads = [
        threading.Thread(target=guarded, name=f"lookalike-lane-{n}", daemon=True) for n in range(count)
    ]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except BaseException:
        halt.set()
        for thread in threads:
            thread.join()
        raise
    if errors:
        raise errors[0]
