"""Coalesce concurrent requests into one forward pass (asyncio queue + single worker).

A forward pass over 16 images costs far less than 16 passes over one, and running one pass
at a time keeps a small CPU from thrashing between requests. The worker takes whatever is
queued, waits up to ``max_wait_s`` for more (never past ``max_batch`` items), runs the
batch in a thread so the event loop keeps accepting uploads, and hands each request its rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass
class BatchStats:
    requests: int = 0
    items: int = 0
    forward_passes: int = 0
    largest_batch: int = 0


@dataclass
class _Job(Generic[T]):
    items: Sequence[T]
    future: asyncio.Future[np.ndarray] = field(repr=False)


class MicroBatcher(Generic[T]):
    def __init__(
        self, encode: Callable[[list[T]], np.ndarray], *, max_batch: int, max_wait_s: float = 0.005
    ) -> None:
        self._encode = encode
        self._max_batch = max(1, max_batch)
        self._max_wait_s = max_wait_s
        self._queue: asyncio.Queue[_Job[T]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self.stats = BatchStats()

    async def submit(self, items: Sequence[T]) -> np.ndarray:
        """Encode ``items`` (possibly alongside other requests' items); rows in input order."""
        self._ensure_worker()
        assert self._queue is not None
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self.stats.requests += 1
        await self._queue.put(_Job(items, future))
        return await future

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
            self._queue = None

    def _ensure_worker(self) -> None:
        # Started lazily, inside the serving loop, so the app works with or without lifespan
        # events (ASGI test transports skip them).
        if self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            jobs = [await queue.get()]
            size = self._drain(queue, jobs, len(jobs[0].items))
            if size < self._max_batch and self._max_wait_s > 0:
                # One short sleep, then take what arrived: simpler than wait_for(queue.get()),
                # whose cancellation can drop an item on Python 3.11.
                await asyncio.sleep(self._max_wait_s)
                self._drain(queue, jobs, size)
            await self._run_batch(jobs)

    def _drain(self, queue: asyncio.Queue[_Job[T]], jobs: list[_Job[T]], size: int) -> int:
        while size < self._max_batch and not queue.empty():
            job = queue.get_nowait()
            jobs.append(job)
            size += len(job.items)
        return size

    async def _run_batch(self, jobs: list[_Job[T]]) -> None:
        batch: list[T] = [item for job in jobs for item in job.items]
        self.stats.forward_passes += 1
        self.stats.items += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        try:
            rows = await asyncio.to_thread(self._encode, batch)
        except Exception as exc:
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        start = 0
        for job in jobs:
            end = start + len(job.items)
            if not job.future.done():  # the client may have gone away
                job.future.set_result(rows[start:end])
            start = end
