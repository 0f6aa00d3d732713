"""Fair order and the places it gives: round-robin across guilds, then across users within a
guild, FIFO per user; and each waiting job's place and ETA.

One busy guild cannot starve another: with two guilds waiting, every other job popped is the
quiet guild's, however many the busy one queued. Pure and in-process. The Redis queue keeps the
same order with Lua scripts that mirror :class:`FairQueue` (``redis/scripts.py``: ``PUSH`` is
:meth:`FairQueue.push`, ``CLAIM`` is :meth:`FairQueue.pop`, ``CANCEL`` is
:meth:`FairQueue.cancel`); its positions come from :func:`fair_order` over a snapshot of its
rings and :func:`places`, the very functions used here. ``tests/test_fairqueue.py`` runs the
scripts in a real Redis against this module on random inputs.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, deque
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from generation.queue.events import Queued

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)
_tickets = itertools.count(1)


_NOBODY = object()


def fair_order(guilds: Iterable[Iterable[Iterable[T]]]) -> list[T]:
    """The order in which jobs leave the queue, given each guild's users' jobs (guilds and
    users in ring order, each user's jobs oldest first): take the front guild's front user's
    oldest job, then move that user and that guild to the back of their rings."""
    rings: deque[deque[deque[T]]] = deque()
    for users in guilds:
        ring = deque(queue for queue in (deque(jobs) for jobs in users) if queue)
        if ring:
            rings.append(ring)
    order: list[T] = []
    while rings:
        ring = rings.popleft()
        jobs = ring.popleft()
        order.append(jobs.popleft())
        if jobs:
            ring.append(jobs)
        if ring:
            rings.append(ring)
    return order


def _ahead_of_last(entries: OrderedDict[Any, Any], key: Any, last: object) -> None:
    """A newcomer (just appended) goes before the entry served last, if that one is first."""
    if len(entries) > 1 and next(iter(entries)) == last:
        entries.move_to_end(key, last=False)


@dataclass(frozen=True)
class Ticket:
    id: int
    guild: int | None
    user: int | None


@dataclass
class _Guild(Generic[T]):
    users: OrderedDict[int | None, deque[tuple[Ticket, T]]] = field(default_factory=OrderedDict)


class FairQueue(Generic[T]):
    """A guild (or user) that comes back to the queue is not put behind the one just served:
    with guilds A (busy) and B (quiet), B's new job goes next, not after another of A's."""

    def __init__(self) -> None:
        self._guilds: OrderedDict[int | None, _Guild[T]] = OrderedDict()
        self._where: dict[int, Ticket] = {}
        self._last_guild: object = _NOBODY
        self._last_user: dict[int | None, object] = {}

    def __len__(self) -> int:
        return len(self._where)

    def push(self, item: T, *, guild: int | None, user: int | None) -> Ticket:
        ticket = Ticket(next(_tickets), guild, user)
        if guild not in self._guilds:
            self._guilds[guild] = _Guild()
            _ahead_of_last(self._guilds, guild, self._last_guild)
        users = self._guilds[guild].users
        if user not in users:
            users[user] = deque()
            _ahead_of_last(users, user, self._last_user.get(guild, _NOBODY))
        users[user].append((ticket, item))
        self._where[ticket.id] = ticket
        return ticket

    def pop(self) -> tuple[Ticket, T] | None:
        """The next job: the front guild's front user's oldest; both move to the back."""
        if not self._guilds:
            return None
        guild_key, guild = next(iter(self._guilds.items()))
        user_key, jobs = next(iter(guild.users.items()))
        ticket, item = jobs.popleft()
        del self._where[ticket.id]
        self._last_guild, self._last_user[guild_key] = guild_key, user_key
        guild.users.move_to_end(user_key)
        if not jobs:
            del guild.users[user_key]
        self._guilds.move_to_end(guild_key)
        if not guild.users:
            del self._guilds[guild_key]
        return ticket, item

    def cancel(self, ticket: Ticket) -> bool:
        """Takes a queued job out; False when it is not queued (running, done, or unknown)."""
        if self._where.pop(ticket.id, None) is None:
            return False
        guild = self._guilds[ticket.guild]
        jobs = guild.users[ticket.user]
        for index, (queued, _) in enumerate(jobs):
            if queued.id == ticket.id:
                del jobs[index]
                break
        if not jobs:
            del guild.users[ticket.user]
        if not guild.users:
            del self._guilds[ticket.guild]
        return True

    def order(self) -> Iterator[Ticket]:
        """The tickets in the order ``pop`` would return them, without popping (O(n))."""
        for ticket, _ in self.items_in_order():
            yield ticket

    def items_in_order(self) -> Iterator[tuple[Ticket, T]]:
        """Tickets and items in the order ``pop`` would return them (O(n))."""
        yield from fair_order(guild.users.values() for guild in self._guilds.values())

    def positions(self) -> dict[int, int]:
        """Ticket id → how many jobs are ahead of it (0: next)."""
        return {ticket.id: index for index, ticket in enumerate(self.order())}

    def positions_by_item(self) -> dict[T, int]:
        """Item → how many jobs are ahead of it (items must be hashable: job ids)."""
        return {item: index for index, (_, item) in enumerate(self.items_in_order())}


@dataclass
class Throughput:
    """Seconds per standard image, a moving average of what the workers measured."""

    seconds_per_unit: float | None = None
    weight: float = 0.3

    def record(self, units: float, seconds: float) -> None:
        if units <= 0 or seconds <= 0:
            return
        sample = seconds / units
        if self.seconds_per_unit is None:
            self.seconds_per_unit = sample
        else:
            self.seconds_per_unit += self.weight * (sample - self.seconds_per_unit)

    def eta(self, units_ahead: float, workers: int = 1) -> float | None:
        if self.seconds_per_unit is None:
            return None
        return units_ahead * self.seconds_per_unit / max(1, workers)


def places(
    order: Sequence[tuple[K, float]],
    throughput: Throughput,
    *,
    workers: int = 1,
    running_left: float = 0.0,
) -> dict[K, Queued]:
    """Each waiting job's place and ETA, given the jobs in fair order with their units: the
    ETA counts the job's own units and those ahead of it, shared by ``workers``, plus what is
    left of the batch running now (``running_left`` seconds; Redis does not know it)."""
    out: dict[K, Queued] = {}
    units_ahead = 0.0
    for ahead, (key, units) in enumerate(order):
        units_ahead += units
        eta = throughput.eta(units_ahead, workers)
        out[key] = Queued(ahead, None if eta is None else eta + running_left)
    return out
