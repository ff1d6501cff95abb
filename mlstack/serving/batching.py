"""Adaptive batching: requests that arrive together share one model call.

A request's array joins a queue and waits for its own slice of the answer. One drain task per
model feeds the model. Before a call it waits for more requests only while all of these hold:
other requests have arrived at the server and are still being read (`arriving`), the batch
holds fewer than `max_rows` rows, and the oldest has waited less than `max_wait_s`. So a lone
request does not wait at all, eight that arrive together go as soon as the eighth is read,
and requests that queued while the model was busy go in the next call. The model runs in a
thread, so the event loop keeps reading requests meanwhile. A request larger than `max_rows`
goes alone; requests are never split.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class _Pending:
    inputs: np.ndarray
    future: asyncio.Future
    arrived: float = field(default_factory=time.perf_counter)


class Batcher:
    """Combine concurrent `predict` calls on arrays (rows along axis 0) into one."""

    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        max_rows: int,
        max_wait_s: float,
        on_call: Callable[[int], None] | None = None,
        arriving: Callable[[], int] = lambda: 0,
    ) -> None:
        self.predict = predict
        self.arriving = arriving  # requests the server is still reading
        self.on_call = on_call  # told how many requests each model call answers
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self._pending: list[_Pending] = []
        self._rows = 0
        self._more = asyncio.Event()
        self._draining = False

    async def predict_async(self, inputs: np.ndarray) -> np.ndarray:
        """The model's answer for `inputs` alone, computed with whatever arrived with it."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(inputs, future))
        self._rows += len(inputs)
        self._more.set()  # a waiting drain looks again
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    def _take(self) -> list[_Pending]:
        """Whole requests from the front with the first one's row shape (a signature with
        -1 past the first axis allows several), up to max_rows rows (at least one request)."""
        shape = self._pending[0].inputs.shape[1:]
        taken, kept, rows = [], [], 0
        for item in self._pending:
            fits = not taken or rows + len(item.inputs) <= self.max_rows
            if fits and item.inputs.shape[1:] == shape:
                taken.append(item)
                rows += len(item.inputs)
            else:
                kept.append(item)
        self._pending = kept
        self._rows -= rows
        return taken

    async def _drain(self) -> None:
        try:
            while self._pending:
                deadline = self._pending[0].arrived + self.max_wait_s
                while self._rows < self.max_rows and self.arriving() > 0:
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        break
                    self._more.clear()
                    try:
                        await asyncio.wait_for(self._more.wait(), left)
                    except TimeoutError:
                        break
                batch = self._take()
                try:
                    if self.on_call is not None:
                        self.on_call(len(batch))
                    inputs = (
                        batch[0].inputs
                        if len(batch) == 1
                        else np.concatenate([item.inputs for item in batch])
                    )
                    outputs = await asyncio.to_thread(self.predict, inputs)
                    if len(outputs) != len(inputs):  # not one output row per input row
                        raise ValueError(f"{len(outputs)} output rows for {len(inputs)} inputs")
                except BaseException as exc:  # every request of the batch learns it failed
                    for item in batch:
                        if not item.future.done():
                            item.future.set_exception(
                                exc if isinstance(exc, Exception) else RuntimeError(str(exc))
                            )
                    if not isinstance(exc, Exception):
                        raise
                    continue
                start = 0
                for item in batch:
                    end = start + len(item.inputs)
                    if not item.future.done():  # a client that went away cancelled its own
                        item.future.set_result(outputs[start:end])
                    start = end
        finally:
            self._draining = False
