"""The one compute slot: every model run of a service takes its turn here, fairly, or is told the server is busy.

:class:`ComputeSlot` hands out ``slots`` turns (one on a CPU: two cores run one model at a time best). Waiters
are served **round-robin across visitors** (``who``: a browser session, an API caller) and first come, first
served within one visitor: a visitor whose first request is being served and who asks again goes behind every
other visitor already waiting, never ahead. Background work (deferred maps, warm-up) asks with
``background=True`` and is served only when no visitor waits. When ``max_waiting`` visitor requests already
wait, a new one is refused at once with :class:`Busy` ("The server is busy, N ahead of you …") instead of
waiting into a timeout. A waiter hears how many are ahead of it (``progress(n)``) while it waits.

A request that holds the slot for several models takes a turn per model (:meth:`lens.Service.run`), so other
visitors are served between them.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .request import LensError

POLL_S = 0.25
"""How often a waiter reports how many are ahead of it."""


class Busy(LensError):
    """The queue for the compute slot is full: the message says how many are ahead and what to do."""


def busy_message(ahead: int) -> str:
    """What a visitor refused by a full queue reads."""
    return (
        f"The server is busy, {ahead} ahead of you: every model run shares its two processor cores and the queue "
        "is full. Try again in a minute."
    )


def waiting_said(what: str, progress: Callable[[float, str], None]) -> Callable[[int], None]:
    """A waiter's ``progress(n)`` as a progress line: "``what``: waiting for the compute slot, n ahead of you"."""
    return lambda ahead: progress(0.0, f"{what}: waiting for the compute slot, {ahead} ahead of you")


@dataclass(eq=False)
class Ticket:
    """One wait for the slot."""

    who: Hashable
    background: bool
    seq: int
    granted: threading.Event = field(default_factory=threading.Event)


class ComputeSlot:
    """``slots`` turns (``None``: no limit, every waiter served at once), handed out round-robin across
    ``who``; at most ``max_waiting`` visitor requests wait (``None``: no limit). Thread-safe."""

    def __init__(self, slots: int | None = 1, max_waiting: int | None = None) -> None:
        self.slots, self.max_waiting = slots, max_waiting
        self._free = slots
        self._queues: OrderedDict[Hashable, deque[Ticket]] = OrderedDict()
        """Visitors with waiting tickets, in the order they are next served (round-robin)."""
        self._background: deque[Ticket] = deque()
        self._holders: list[Ticket] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()

    # -- state -------------------------------------------------------------------------------------------------

    def waiting(self) -> int:
        """How many visitor requests wait (background work not counted)."""
        with self._lock:
            return sum(len(q) for q in self._queues.values())

    def held(self) -> int:
        """How many turns are held now."""
        with self._lock:
            return len(self._holders)

    def order(self) -> list[Hashable]:
        """Who is served next, in order (a background ticket reads as its ``who``): what :meth:`ahead` counts."""
        with self._lock:
            return [t.who for t in self._serving_order()]

    def ahead(self, ticket: Ticket) -> int:
        """How many are ahead of ``ticket``: the turns held now and the waiters served before it."""
        with self._lock:
            return self._ahead(ticket)

    # -- waiting -----------------------------------------------------------------------------------------------

    @contextmanager
    def hold(
        self,
        who: Hashable | None = None,
        *,
        background: bool = False,
        progress: Callable[[int], None] | None = None,
        poll: float = POLL_S,
    ) -> Iterator[Ticket]:
        """Wait for a turn and hold it for the ``with`` block. ``who``: the visitor (``None``: a caller of its
        own, served in arrival order among the others); ``background``: only when no visitor waits;
        ``progress(n)``: told every ``poll`` s how many are ahead while waiting. Raises :class:`Busy` at once
        when the queue is full (background work is never refused)."""
        ticket = self.enter(who, background=background)
        try:
            while not ticket.granted.wait(poll):
                if progress is not None:
                    progress(self.ahead(ticket))
            yield ticket
        finally:
            self.leave(ticket)

    def enter(self, who: Hashable | None = None, *, background: bool = False) -> Ticket:
        """Join the queue (:meth:`hold` is the usual way; a ticket must be :meth:`leave`-d): granted at once
        when a turn is free and nobody waits before it; :class:`Busy` when the queue is full."""
        with self._lock:
            seq = next(self._seq)
            ticket = Ticket(("anonymous", seq) if who is None else who, background, seq)
            if background:
                self._background.append(ticket)
            else:
                waiting = sum(len(q) for q in self._queues.values())
                if self.max_waiting is not None and waiting >= self.max_waiting and not self._could_run():
                    raise Busy(busy_message(waiting + len(self._holders)))
                self._queues.setdefault(ticket.who, deque()).append(ticket)
            self._dispatch()
            return ticket

    def leave(self, ticket: Ticket) -> None:
        """Give the turn back (or stop waiting for it); the next waiter is served."""
        with self._lock:
            if ticket in self._holders:
                self._holders.remove(ticket)
                if self._free is not None:
                    self._free += 1
            elif ticket.background:
                if ticket in self._background:
                    self._background.remove(ticket)
            else:
                queue = self._queues.get(ticket.who)
                if queue is not None and ticket in queue:
                    queue.remove(ticket)
                    if not queue:
                        del self._queues[ticket.who]
            self._dispatch()

    # -- under the lock ----------------------------------------------------------------------------------------

    def _could_run(self) -> bool:
        return self._free is None or (self._free > 0 and not self._queues)

    def _next(self) -> Ticket | None:
        """Take the next waiter off the queues (the first visitor in the rotation, who then goes last)."""
        if self._queues:
            who, queue = next(iter(self._queues.items()))
            ticket = queue.popleft()
            del self._queues[who]
            if queue:
                self._queues[who] = queue  # served: to the back of the rotation
            return ticket
        return self._background.popleft() if self._background else None

    def _dispatch(self) -> None:
        while self._free is None or self._free > 0:
            ticket = self._next()
            if ticket is None:
                return
            if self._free is not None:
                self._free -= 1
            self._holders.append(ticket)
            ticket.granted.set()

    def _serving_order(self) -> list[Ticket]:
        queues = OrderedDict((who, deque(q)) for who, q in self._queues.items())
        out: list[Ticket] = []
        while queues:
            who, queue = next(iter(queues.items()))
            out.append(queue.popleft())
            del queues[who]
            if queue:
                queues[who] = queue
        return out + list(self._background)

    def _ahead(self, ticket: Ticket) -> int:
        if ticket in self._holders:
            return 0
        order = self._serving_order()
        return len(self._holders) + (order.index(ticket) if ticket in order else len(order))
