"""The fair queue: round-robin across guilds then users, cancel, positions, and the property
that matters: a flooding guild does not starve a quiet one."""

from __future__ import annotations

from generation.fairqueue import FairQueue


def _drain(queue: FairQueue[str]) -> list[str]:
    out = []
    while (popped := queue.pop()) is not None:
        out.append(popped[1])
    return out


def test_round_robin_across_guilds_then_users() -> None:
    queue: FairQueue[str] = FairQueue()
    for n in range(3):
        queue.push(f"A1-{n}", guild=1, user=11)
    queue.push("A2-0", guild=1, user=12)
    queue.push("B1-0", guild=2, user=21)
    queue.push("B1-1", guild=2, user=21)
    predicted = [ticket.id for ticket in queue.order()]
    popped = []
    while (job := queue.pop()) is not None:
        popped.append(job)
    assert [item for _, item in popped] == ["A1-0", "B1-0", "A2-0", "B1-1", "A1-1", "A1-2"]
    assert [ticket.id for ticket, _ in popped] == predicted  # order() predicts pop() exactly
    assert len(queue) == 0


def test_a_newcomer_goes_before_the_guild_just_served() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.push("A1", guild=1, user=1)
    queue.push("A2", guild=1, user=1)
    assert queue.pop() is not None  # A1: guild 1 was served last and is alone at the front
    queue.push("B1", guild=2, user=2)  # arrives while A1 runs
    assert _drain(queue) == ["B1", "A2"]  # not behind another of guild 1's jobs


def test_cancel_and_positions() -> None:
    queue: FairQueue[str] = FairQueue()
    first = queue.push("a", guild=1, user=1)
    second = queue.push("b", guild=1, user=1)
    other = queue.push("c", guild=2, user=2)
    assert queue.positions() == {first.id: 0, other.id: 1, second.id: 2}
    assert queue.cancel(first) is True
    assert queue.cancel(first) is False
    assert queue.positions() == {second.id: 0, other.id: 1}
    assert _drain(queue) == ["b", "c"]
    assert queue.cancel(other) is False  # already popped


def test_a_flood_does_not_starve_a_trickle() -> None:
    """One server, service time 1: guild A queues 200 jobs at once from 5 users, guild B adds
    one job every 7 time units. B's wait stays within two service times."""
    queue: FairQueue[tuple[str, float]] = FairQueue()
    for n in range(200):
        queue.push(("A", 0.0), guild=1, user=n % 5)
    waits = {"A": [], "B": []}
    now, next_b = 0.0, 0.0
    while len(queue) or next_b < 150:
        while next_b <= now and next_b < 150:
            queue.push(("B", next_b), guild=2, user=99)
            next_b += 7
        popped = queue.pop()
        if popped is None:
            now = next_b
            continue
        guild, arrived = popped[1]
        waits[guild].append(now - arrived)
        now += 1.0
    assert len(waits["B"]) == 22
    assert max(waits["B"]) <= 2.0
    assert len(waits["A"]) == 200
