"""How many devices a rollout keeps downloading at once, from the gateway's backlog.

Devices notified all at once ask for chunks all at once; once the gateway's queue holds more than it
answers within a device's chunk timeout, devices ask again and chunks are sent twice. So the window
grows while the backlog stays short and the window is in use, and shrinks when the backlog grows
(additive increase, multiplicative decrease, as TCP's congestion window). The rollout's
`max_concurrent` stays the operator's upper bound.
"""

from __future__ import annotations

MIN_WINDOW, START_WINDOW, MAX_WINDOW = 50, 400, 100_000
# Device messages queued in the gateway under which the window grows, over which it shrinks.
LOW_BACKLOG, HIGH_BACKLOG = 300, 1500


class DownloadWindow:
    def __init__(self, start: int = START_WINDOW, minimum: int = MIN_WINDOW) -> None:
        self.size = start
        self.minimum = minimum

    def ceiling(self) -> int:
        """The largest the window can be after the next update (the rollout scan loads no more)."""
        return min(MAX_WINDOW, self.size + max(1, self.size // 4))

    def update(self, backlog: int, in_flight: int) -> int:
        """The window after one tick that saw `backlog` queued messages and `in_flight` devices."""
        if backlog > HIGH_BACKLOG:
            self.size = max(self.minimum, min(self.size, in_flight) * 3 // 4)
        elif backlog < LOW_BACKLOG and in_flight >= self.size // 2:
            self.size = min(MAX_WINDOW, self.size + max(1, self.size // 4))
        return self.size
