"""Request timeouts without a timer per request: one FIFO and one timer per timeout length.

Every request of a cluster gets the same total timeout (and every attempt the same per-try
timeout), so deadlines armed in arrival order are already sorted: a ``TimeoutQueue`` keeps
them in a deque, runs a single loop timer for the oldest live one, and drops settled ones
from the front as new ones arrive. Arming costs an append; settling, a flag. (A timer per
request costs a timer handle to create and cancel, and ``asyncio.timeout`` twice that
again; both showed in the proxy's profile.)

Expiry cancels the task, exactly as ``asyncio.timeout`` does; used as a context manager a
ticket turns its own cancellation into ``TimeoutError``, and ``settle`` tells the caller
whether the ``CancelledError`` it holds was this timeout's (``uncancel``-counted, so
an outer timeout or a real cancellation firing in the same moment is never swallowed).
A ticket may also be made unarmed and armed later (``TimeoutQueues.ticket``, then
``arm``): a request's timers start when the request is complete, which for a streamed
body is after the attempt began. Armed at any moment, its deadline is still "now + the
queue's delay", so the queue stays in deadline order.

Invariants: a ticket fires at most once and never before its deadline; a settled ticket
never fires; an unarmed ticket never fires and arming it twice changes nothing.
"""

from __future__ import annotations

import asyncio
from collections import deque

# uvloop keeps time in whole milliseconds: a timer may wake up to 1 ms before the deadline
# it was set for, and must still expire it rather than re-arm for the same instant.
_RESOLUTION = 0.001


class Ticket:
    __slots__ = ("_cancelling", "_queue", "deadline", "fired", "settled", "task")

    def __init__(self, queue: TimeoutQueue, task: asyncio.Task[object]) -> None:
        self._queue: TimeoutQueue | None = queue  # None once armed
        self.deadline = 0.0
        self.task = task
        self._cancelling = task.cancelling()
        self.fired = False
        self.settled = False

    def arm(self) -> None:
        """Start the clock: the ticket expires one delay of its queue from now."""
        queue = self._queue
        if queue is not None and not self.settled:
            self._queue = None
            queue.enqueue(self)

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: object, tb: object) -> None:
        # Like asyncio.timeout: this timeout's own cancellation leaves as TimeoutError.
        self.settled = True
        if not self.fired:  # the usual case, without a call: ``settle`` inlined
            return
        if self.task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from None

    def settle(self, cancelled: bool) -> bool:
        """Ends the ticket; True when ``cancelled`` (a CancelledError) is this timeout's."""
        self.settled = True
        if not self.fired:
            return False
        # Fired: take back our cancellation; it is ours to report only if nobody else's
        # (an outer timeout, a client gone) is pending as well.
        return self.task.uncancel() <= self._cancelling and cancelled


class TimeoutQueue:
    """Deadlines of one length, oldest first, served by one timer."""

    __slots__ = ("_entries", "_loop", "_timer", "delay")

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        self._loop = loop
        self.delay = delay
        self._entries: deque[Ticket] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def arm(self, task: asyncio.Task[object]) -> Ticket:
        ticket = Ticket(self, task)
        self.enqueue(ticket)
        return ticket

    def enqueue(self, ticket: Ticket) -> None:
        ticket._queue = None
        ticket.deadline = self._loop.time() + self.delay
        entries = self._entries
        while entries and entries[0].settled:
            entries.popleft()
        entries.append(ticket)
        if self._timer is None:
            self._timer = self._loop.call_at(ticket.deadline, self._expire)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._entries.clear()

    def _expire(self) -> None:
        self._timer = None
        horizon = self._loop.time() + _RESOLUTION
        entries = self._entries
        while entries:
            head = entries[0]
            if head.settled:
                entries.popleft()
            elif head.deadline <= horizon:
                entries.popleft()
                head.fired = True
                head.task.cancel()
            else:
                self._timer = self._loop.call_at(head.deadline, self._expire)
                return


class TimeoutQueues:
    """The queues of one event loop, by timeout length (a handful: one per configured value)."""

    __slots__ = ("_loop", "_queues")

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queues: dict[float, TimeoutQueue] = {}

    def arm(self, delay: float, task: asyncio.Task[object]) -> Ticket:
        queue = self._queues.get(delay)
        if queue is None or queue._loop is not task.get_loop():
            queue = self._queue(delay, task.get_loop())
        ticket = Ticket(queue, task)
        queue.enqueue(ticket)
        return ticket

    def ticket(self, delay: float, task: asyncio.Task[object]) -> Ticket:
        """An unarmed ticket: it runs from its ``arm()``."""
        return Ticket(self._queue_for(delay, task), task)

    def _queue_for(self, delay: float, task: asyncio.Task[object]) -> TimeoutQueue:
        queue = self._queues.get(delay)
        if queue is None or self._loop is not task.get_loop():
            queue = self._queue(delay, task.get_loop())
        return queue

    def _queue(self, delay: float, loop: asyncio.AbstractEventLoop) -> TimeoutQueue:
        if loop is not self._loop:  # a new loop (tests run several): old timers are void
            for old in self._queues.values():
                old.close()
            self._queues.clear()
            self._loop = loop
        queue = self._queues[delay] = TimeoutQueue(loop, delay)
        return queue
