"""A fair queue: round-robin across guilds, then across users within a guild, FIFO per user.

One busy guild cannot starve another: with two guilds waiting, every other job popped is the
quiet guild's, however many the busy one queued. Pure and in-process; the Redis queue keeps the
same order with the same rules.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_tickets = itertools.count(1)


_NOBODY = object()


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
        guilds = deque(
            (key, deque((user, deque(jobs)) for user, jobs in guild.users.items()))
            for key, guild in self._guilds.items()
        )
        while guilds:
            key, users = guilds.popleft()
            user, jobs = users.popleft()
            yield jobs.popleft()
            if jobs:
                users.append((user, jobs))
            if users:
                guilds.append((key, users))

    def positions(self) -> dict[int, int]:
        """Ticket id → how many jobs are ahead of it (0: next)."""
        return {ticket.id: index for index, ticket in enumerate(self.order())}

    def positions_by_item(self) -> dict[T, int]:
        """Item → how many jobs are ahead of it (items must be hashable: job ids)."""
        return {item: index for index, (_, item) in enumerate(self.items_in_order())}
