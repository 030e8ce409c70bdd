"""The worker runtime's state table and its ledger's Summary, as plain logic (no Redis)."""

from __future__ import annotations

import threading

import pytest

from rediswq_kit import EXIT_ERROR, EXIT_STOPPED
from rediswq_worker.runtime.ledger import Ledger
from rediswq_worker.runtime.options import Options
from rediswq_worker.runtime.pacing import Pacing
from rediswq_worker.runtime.state import TRANSITIONS, Phase, State


def test_every_state_has_a_row_and_only_draining_or_stopping_lead_to_stopped() -> None:
    assert set(TRANSITIONS) == set(State)
    assert [state for state, targets in TRANSITIONS.items() if State.STOPPED in targets] == [
        State.DRAINING,
        State.STOPPING,
    ]
    assert TRANSITIONS[State.STOPPED] == frozenset()


@pytest.mark.parametrize("late", [State.LEASING, State.WAITING, State.DRAINING])
def test_a_lease_answered_after_the_stop_began_does_not_restart_the_worker(late: State) -> None:
    phase = Phase()
    assert phase.to(State.STOPPING)
    assert not phase.to(late)
    assert phase.state is State.STOPPING
    assert phase.to(State.STOPPED)
    assert not phase.to(State.STOPPING)
    assert phase.state is State.STOPPED


def test_the_lease_that_reaches_max_items_moves_the_worker_to_draining() -> None:
    ledger = Ledger(lease_secs=30, max_items=2)
    phase = Phase()
    pacing = Pacing(Options(max_items=2), ledger, phase)
    with ledger.cv:
        ledger.taken = 1
        pacing.leased_locked(found=True, drained=False, now=0.0)
        assert phase.state is State.LEASING
        ledger.taken = 2
        pacing.leased_locked(found=True, drained=False, now=0.0)
        assert phase.state is State.DRAINING
        assert pacing.count_locked() == 0


def test_a_failed_slot_call_makes_a_leasing_worker_wait_but_leaves_draining_alone() -> None:
    ledger = Ledger(lease_secs=30, max_items=None)
    phase = Phase()
    pacing = Pacing(Options(), ledger, phase)
    with ledger.cv:
        pacing.failed_locked(now=5.0)
        assert (phase.state, pacing.troubled, pacing.next_poll) == (State.WAITING, True, 5.0)
        pacing.leased_locked(found=False, drained=True, now=6.0)
        pacing.failed_locked(now=7.0)
        assert phase.state is State.DRAINING


def test_the_first_end_recorded_stands_when_the_hard_stop_and_the_keeper_race() -> None:
    ledger = Ledger(lease_secs=30, max_items=None)
    start = threading.Barrier(2)

    def end(outcome: str, code: int) -> None:
        start.wait()
        ledger.end(outcome, code)

    threads = [
        threading.Thread(target=end, args=("stopped by SIGTERM", EXIT_STOPPED)),
        threading.Thread(target=end, args=("stopped on an error", EXIT_ERROR)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    summary = ledger.summary
    assert (summary.outcome, summary.exit_code) in [
        ("stopped by SIGTERM", EXIT_STOPPED),
        ("stopped on an error", EXIT_ERROR),
    ]
    ledger.end("drained", 0)
    assert summary.outcome != "drained"
