"""Deadline: a callback due at a time that moves on every request, on a timer that rarely does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Deadline:
    """``expired`` once the time last armed for has passed, unless disarmed since.

    A connection arms and disarms three times per request (head, body, keep-alive). A timer
    is scheduled only when the pending one would fire too late; one that fires early finds
    the deadline moved and re-arms itself for it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, expired: Callable[[], None]) -> None:
        self._loop = loop
        self._expired = expired
        self._due: float | None = None  # when ``expired`` is due, if it is
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # when the pending timer fires

    def arm(self, seconds: float) -> None:
        """Due in ``seconds``, instead of whatever was armed before."""
        self._due = due = self._loop.time() + seconds
        if self._timer is None or self._timer_at > due:
            self._drop_timer()
            self._timer, self._timer_at = self._loop.call_at(due, self._fire), due

    def disarm(self) -> None:
        self._due = None  # a pending timer finds nothing due and lapses

    def cancel(self) -> None:
        """Disarm, and drop the pending timer too: it would hold its owner until it fired."""
        self._due = None
        self._drop_timer()

    def _drop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer, due = None, self._due
        if due is None:
            return
        if due > self._loop.time():  # armed again since this timer was scheduled
            self._timer, self._timer_at = self._loop.call_at(due, self._fire), due
            return
        self._due = None
        self._expired()
