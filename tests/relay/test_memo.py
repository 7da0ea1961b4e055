"""The relay's memory in front of the token and price caches, on a clock the test moves."""

import asyncio

from relay.memo import LOCAL_CACHE_SECONDS, LocalMemo
from tests.clock import FakeClock


def test_concurrent_misses_share_one_load():
    calls = []

    async def scenario():
        release = asyncio.Event()

        async def load():
            calls.append(1)
            await release.wait()
            return len(calls)

        memo = LocalMemo(seconds=0.5, clock=FakeClock())
        waiting = [asyncio.ensure_future(memo.get("k", load)) for _ in range(20)]
        # Every request asks before the first load answers.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        release.set()
        return await asyncio.gather(*waiting)

    assert asyncio.run(scenario()) == [1] * 20
    assert len(calls) == 1


def test_an_answer_is_remembered_for_its_seconds_and_no_longer():
    calls = []
    clock = FakeClock()

    async def load():
        calls.append(1)
        return len(calls)

    async def scenario():
        memo = LocalMemo(seconds=0.5, clock=clock)
        answers = [await memo.get("k", load)]
        clock.advance(0.499)
        answers.append(await memo.get("k", load))
        clock.advance(0.001)
        answers.append(await memo.get("k", load))
        answers.append(await memo.get("k", load))
        return answers

    assert asyncio.run(scenario()) == [1, 1, 2, 2]
    assert len(calls) == 2


def test_a_miss_is_remembered_too():
    calls = []
    clock = FakeClock()

    async def load():
        calls.append(1)
        return None

    async def scenario():
        memo = LocalMemo(seconds=0.5, clock=clock)
        await memo.get("unknown", load)
        await memo.get("unknown", load)
        clock.advance(0.5)
        await memo.get("unknown", load)

    asyncio.run(scenario())
    assert len(calls) == 2


def test_zero_seconds_remembers_nothing():
    calls = []

    async def load():
        calls.append(1)
        return None

    async def scenario():
        memo = LocalMemo(seconds=0)
        await memo.get("k", load)
        await memo.get("k", load)

    asyncio.run(scenario())
    assert len(calls) == 2


def test_the_relay_remembers_tokens_for_less_than_the_promised_second():
    # A disabled or deleted token is refused within 1 s: the process memory in front
    # of the shared cache must leave room for that (the shared cache sees a change as
    # it commits).
    assert 0 <= LOCAL_CACHE_SECONDS < 1
