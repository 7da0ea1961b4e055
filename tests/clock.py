"""A clock for tests: it stands still until the test moves it."""


class FakeClock:
    """Call it for the time in seconds (where it starts: `start`); `advance` moves it."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
