"""How long `watch` and the view wait between refreshes.

An interval the user set (`--interval`, `+`/`-` in the view) rules. The default one
adapts: when a refresh costs more than `cpu_share` of it, the next waits longer, so
that bufmon's own refreshes take at most that share of one core on a host with so
many sockets that one refresh is slow.
"""

from __future__ import annotations

DEFAULT_INTERVAL = 1.0
DEFAULT_CPU_SHARE = 0.25


class Pace:
    __slots__ = ("chosen", "cost", "cpu_share", "interval")

    def __init__(
        self,
        interval: float = DEFAULT_INTERVAL,  # what the user set, or the default
        chosen: bool = False,  # the user set it: it rules, whatever a refresh costs
        cpu_share: float = DEFAULT_CPU_SHARE,  # of one core; 0: never stretch
    ) -> None:
        self.interval = interval
        self.chosen = chosen
        self.cpu_share = cpu_share
        self.cost: float | None = None  # seconds the last refresh took

    @classmethod
    def from_option(cls, interval: float | None, cpu_share: float = DEFAULT_CPU_SHARE) -> Pace:
        """The pace of an `--interval` option: None when the user did not give it."""
        if interval is None:
            return cls(DEFAULT_INTERVAL, chosen=False, cpu_share=cpu_share)
        return cls(interval, chosen=True, cpu_share=cpu_share)

    @property
    def in_force(self) -> float:
        """Seconds from the start of one refresh to the start of the next."""
        if self.chosen or not self.cpu_share or self.cost is None:
            return self.interval
        return max(self.interval, self.cost / self.cpu_share)

    def choose(self, interval: float) -> None:
        """The user set the interval: no adapting from now on."""
        self.interval, self.chosen = interval, True

    def took(self, cost: float) -> None:
        """A refresh took `cost` seconds (the next ones wait longer if that is too much)."""
        self.cost = cost

    def describe(self) -> str:
        """`every 1s`; an adapting pace adds what a refresh costs: `every 1.6s (refresh 0.40s)`."""
        every = f"every {_seconds(self.in_force)}s"
        if self.chosen or self.cost is None:
            return every
        return f"{every} (refresh {self.cost:.2f}s)"


def _seconds(value: float) -> str:
    """0.25, 1, 1.6, 125.4: what a user chose exactly, an adapted one to a tenth."""
    return f"{value:g}" if value < 1 else f"{round(value, 1):g}"
