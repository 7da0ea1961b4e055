import asyncio

from relay.memo import LOCAL_CACHE_SECONDS, LocalMemo


def test_concurrent_misses_share_one_load_and_entries_expire():
    calls = []

    async def load():
        calls.append(1)
        await asyncio.sleep(0.05)
        return len(calls)

    async def scenario():
        memo = LocalMemo(seconds=0.2)
        together = await asyncio.gather(*(memo.get("k", load) for _ in range(20)))
        cached = await memo.get("k", load)
        await asyncio.sleep(0.25)
        reloaded = await memo.get("k", load)
        return together, cached, reloaded

    together, cached, reloaded = asyncio.run(scenario())

    assert together == [1] * 20
    assert cached == 1
    assert reloaded == 2
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
