"""The worker runtime's state table and its ledger's Summary, as plain logic (no Redis)."""

from __future__ import annotations

import threading

import pytest

from rediswq_worker.runtime.ledger import Ledger
from rediswq_worker.runtime.options import Options
from rediswq_worker.runtime.pacing import Pacing
from rediswq_worker.runtime.state import TRANSITIONS, Ending, Phase, State


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

    def end(outcome: str, ending: Ending) -> None:
        start.wait()
        ledger.end(outcome, ending)

    threads = [
        threading.Thread(target=end, args=("stopped by SIGTERM", Ending.STOPPED)),
        threading.Thread(target=end, args=("stopped on an error", Ending.FAILED)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    summary = ledger.summary
    assert (summary.outcome, summary.ending) in [
        ("stopped by SIGTERM", Ending.STOPPED),
        ("stopped on an error", Ending.FAILED),
    ]
    ledger.end("drained", Ending.DRAINED)
    assert summary.outcome != "drained"


def test_every_ending_has_the_exit_code_its_comment_and_the_state_table_give() -> None:
    """The runtime reports an Ending; the command alone maps it to a code (and 0 only for DRAINED)."""
    import inspect
    import re

    from rediswq_worker.runtime import state
    from rediswq_worker.runtime.options import Summary
    from rediswq_worker.work import EXIT_CODES, exit_code

    commented = {
        Ending[name]: int(code)
        for name, code in re.findall(r"^    (\w+) = \"\w+\"  # (\d):", inspect.getsource(Ending), re.M)
    }
    assert commented == EXIT_CODES and set(EXIT_CODES) == set(Ending)
    rows = re.findall(r"^(?:  [A-Z*]+ -> [A-Z]+)? {2,}(\d)  ", state.__doc__ or "", re.M)
    assert {int(code) for code in rows} == set(EXIT_CODES.values()) - {4}  # 4: told in the 0 row
    assert [e for e, code in EXIT_CODES.items() if code == 0] == [Ending.DRAINED]
    assert exit_code(Summary()) == 1  # a run that recorded no ending never claims success
    for ending, code in EXIT_CODES.items():
        assert exit_code(Summary(ending=ending)) == code
