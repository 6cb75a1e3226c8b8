"""lens.core.slot: one turn at a time, round-robin across visitors, background last, busy instead of a timeout.

Ordering is checked on the queue's own state (tickets entered in a known order, turns handed back one by one),
never by timing."""

from __future__ import annotations

import threading

import pytest

from lens.core.slot import Busy, ComputeSlot


def _granted(slot: ComputeSlot, tickets) -> list:
    return [t for t in tickets if t.granted.is_set()]


def _serve_all(slot: ComputeSlot, first) -> list:
    """Hand back turns one at a time from ``first``; returns who was granted, in order."""
    served, current = [], first
    while current is not None:
        served.append(current.who)
        slot.leave(current)
        current = next((t for t in slot._holders), None)
    return served


def test_one_turn_at_a_time_and_first_come_first_served_within_a_visitor():
    slot = ComputeSlot(1)
    a1 = slot.enter("a")
    a2, a3 = slot.enter("a"), slot.enter("a")
    assert a1.granted.is_set() and not a2.granted.is_set() and not a3.granted.is_set()
    assert slot.held() == 1 and slot.waiting() == 2
    slot.leave(a1)
    assert a2.granted.is_set() and not a3.granted.is_set()
    slot.leave(a2)
    assert a3.granted.is_set()
    slot.leave(a3)
    assert slot.held() == 0 and slot.waiting() == 0


def test_a_visitors_second_request_does_not_jump_the_queue_of_others():
    slot = ComputeSlot(1)
    a1 = slot.enter("a")  # running
    a2 = slot.enter("a")  # a's second request, before b and c arrive
    b1 = slot.enter("b")
    c1 = slot.enter("c")
    a3 = slot.enter("a")
    assert slot.order() == ["a", "b", "c", "a"]
    assert [slot.ahead(t) for t in (a2, b1, c1, a3)] == [1, 2, 3, 4]
    assert _serve_all(slot, a1) == ["a", "a", "b", "c", "a"]

    # a visitor served just now goes behind those already waiting
    slot = ComputeSlot(1)
    a1, b1, a2 = slot.enter("a"), slot.enter("b"), slot.enter("a")
    c1 = slot.enter("c")
    assert slot.order() == ["b", "a", "c"] and slot.ahead(c1) == 3
    assert _serve_all(slot, a1) == ["a", "b", "a", "c"]


def test_callers_without_a_name_are_served_in_arrival_order():
    slot = ComputeSlot(1)
    first = slot.enter()
    others = [slot.enter() for _ in range(3)]
    assert [slot.ahead(t) for t in others] == [1, 2, 3]
    assert _serve_all(slot, first) == [first.who, *(t.who for t in others)]


def test_background_work_waits_until_no_visitor_waits_and_is_never_refused():
    slot = ComputeSlot(1, max_waiting=1)
    a1 = slot.enter("a")
    warm = [slot.enter("warm", background=True) for _ in range(3)]
    b1 = slot.enter("b")
    assert slot.order() == ["b", "warm", "warm", "warm"]
    assert _serve_all(slot, a1) == ["a", "b", "warm", "warm", "warm"]
    assert all(t.granted.is_set() for t in [*warm, b1])


def test_a_full_queue_refuses_at_once_saying_how_many_are_ahead():
    slot = ComputeSlot(1, max_waiting=2)
    held = slot.enter("a")
    slot.enter("b"), slot.enter("c")
    with pytest.raises(Busy, match=r"busy, 3 ahead of you") as caught:
        slot.enter("d")
    assert "Try again" in str(caught.value)
    assert isinstance(caught.value, ValueError), "a LensError: shown to the visitor as a sentence"
    assert slot.waiting() == 2, "the refused request left nothing queued"
    slot.leave(held)
    assert slot.waiting() == 1
    slot.enter("d")  # room again


def test_two_turns_run_two_at_once_and_none_means_no_limit():
    slot = ComputeSlot(2)
    a, b, c = slot.enter("a"), slot.enter("b"), slot.enter("c")
    assert len(_granted(slot, [a, b, c])) == 2 and slot.ahead(c) == 2
    free = ComputeSlot(None, max_waiting=0)
    assert all(free.enter(w).granted.is_set() for w in "abcdef")


def test_hold_waits_reports_the_count_ahead_and_gives_the_turn_back_even_on_error():
    slot = ComputeSlot(1)
    first = slot.enter("a")
    heard: list[int] = []
    inside = threading.Event()

    def second() -> None:
        with slot.hold("b", progress=heard.append, poll=0.01):
            inside.set()

    t = threading.Thread(target=second, daemon=True)
    t.start()
    while not heard:  # the waiter says how many are ahead of it while it waits
        threading.Event().wait(0.01)
    assert not inside.is_set() and heard[0] == 1
    slot.leave(first)
    t.join(10)
    assert inside.is_set() and slot.held() == 0
    with pytest.raises(RuntimeError), slot.hold("c"):
        raise RuntimeError("work failed")
    assert slot.held() == 0 and slot.waiting() == 0, "a failing holder gives its turn back"


def test_fake_work_from_many_threads_never_overlaps_and_every_request_is_served():
    slot = ComputeSlot(1, max_waiting=None)
    running, peak, done, lock = [0], [0], [], threading.Lock()

    def work(who: str) -> None:
        with slot.hold(who, poll=0.01):
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            sum(range(2000))  # a little work, no sleeping
            with lock:
                running[0] -= 1
                done.append(who)

    threads = [threading.Thread(target=work, args=(f"v{i % 3}",)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert peak[0] == 1 and len(done) == 24 and slot.held() == 0
