"""The adaptive batcher on its own: concurrent requests share model calls and each gets its
own rows back; a lone request does not wait; requests still arriving are waited for, up to the
bound; no call exceeds max_rows; a failing call fails only its own requests."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from mlstack.serving.batching import Batcher


class Model:
    """Doubles its input; records the size of every call."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.calls: list[int] = []
        self.fail_on = fail_on

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.calls.append(len(batch))
        if self.fail_on is not None and (batch == self.fail_on).any():
            raise ValueError("bad row")
        time.sleep(0.002)  # a model takes time: requests queue meanwhile
        return batch * 2.0


def _run(coroutine):
    return asyncio.run(coroutine)


def test_concurrent_requests_share_calls_and_each_gets_its_own_rows() -> None:
    model = Model()

    async def main() -> tuple[list, list]:
        batcher = Batcher(model, max_rows=64, max_wait_s=0.005)
        inputs = [np.full((1 + i % 3, 2), float(i)) for i in range(40)]
        return inputs, await asyncio.gather(*(batcher.predict_async(x) for x in inputs))

    inputs, outputs = _run(main())
    for x, y in zip(inputs, outputs, strict=True):
        np.testing.assert_array_equal(y, x * 2.0)  # its own rows, in its own order
    assert sum(model.calls) == sum(len(x) for x in inputs)
    assert len(model.calls) < len(inputs)  # shared
    assert max(model.calls) <= 64


def test_no_call_exceeds_max_rows_and_a_big_request_goes_alone() -> None:
    model = Model()

    async def main() -> None:
        batcher = Batcher(model, max_rows=8, max_wait_s=0.005)
        small = [batcher.predict_async(np.ones((3, 1))) for _ in range(10)]
        big = batcher.predict_async(np.ones((20, 1)))
        await asyncio.gather(*small, big)

    _run(main())
    assert 20 in model.calls  # whole, never split
    assert all(size <= 8 for size in model.calls if size != 20)
    assert sum(model.calls) == 50


def test_a_lone_request_does_not_wait_and_an_arriving_one_is_waited_for() -> None:
    model = Model()
    arriving = {"n": 0}

    async def main() -> tuple[float, float, int, float]:
        batcher = Batcher(model, max_rows=64, max_wait_s=0.5, arriving=lambda: arriving["n"])
        started = time.perf_counter()
        await batcher.predict_async(np.ones((1, 1)))  # nobody else: straight to the model
        alone = time.perf_counter() - started
        # One more request is being read: the first waits for it (not the full 0.5 s).
        arriving["n"] = 1

        async def late() -> np.ndarray:
            await asyncio.sleep(0.05)
            arriving["n"] = 0
            return await batcher.predict_async(np.ones((1, 1)))

        started = time.perf_counter()
        await asyncio.gather(batcher.predict_async(np.ones((1, 1))), late())
        together = time.perf_counter() - started
        calls_before = len(model.calls)
        # Still "arriving" but never comes: the wait is bounded by max_wait_s.
        arriving["n"] = 1
        started = time.perf_counter()
        await batcher.predict_async(np.ones((1, 1)))
        return alone, together, calls_before, time.perf_counter() - started

    alone, together, calls_before, bounded = _run(main())
    assert alone < 0.1
    assert model.calls[1] == 2 and calls_before == 2  # the two went in one call
    assert 0.05 <= together < 0.4
    assert 0.5 <= bounded < 1.0


def test_a_failing_call_fails_its_requests_only() -> None:
    model = Model(fail_on=7)

    async def main() -> list:
        batcher = Batcher(model, max_rows=4, max_wait_s=0.01)
        jobs = [batcher.predict_async(np.full((1, 1), float(i))) for i in range(12)]
        return await asyncio.gather(*jobs, return_exceptions=True)

    results = _run(main())
    failed = [i for i, r in enumerate(results) if isinstance(r, Exception)]
    assert 7 in failed and len(failed) <= 4  # the batch of row 7, nothing else
    assert all(
        np.array_equal(r, np.full((1, 1), 2.0 * i))
        for i, r in enumerate(results)
        if i not in failed
    )
    with pytest.raises(ValueError, match="bad row"):
        raise results[7]


def test_requests_of_other_row_shapes_are_not_concatenated_and_bad_outputs_fail() -> None:
    model = Model()

    async def main() -> list:
        batcher = Batcher(model, max_rows=64, max_wait_s=0.005)
        shapes = [(1, 3), (1, 5), (2, 3), (1, 5)]
        return await asyncio.gather(*(batcher.predict_async(np.ones(s)) for s in shapes))

    outputs = _run(main())
    assert [o.shape for o in outputs] == [(1, 3), (1, 5), (2, 3), (1, 5)]
    assert sorted(model.calls) == [2, 3]  # (1,3)+(2,3) together, the two (1,5) together

    async def wrong_rows() -> list:
        batcher = Batcher(lambda x: np.ones((len(x) + 1, 1)), max_rows=8, max_wait_s=0.0)
        return await asyncio.gather(batcher.predict_async(np.ones((2, 1))), return_exceptions=True)

    (failed,) = _run(wrong_rows())
    assert isinstance(failed, ValueError) and "3 output rows for 2 inputs" in str(failed)
