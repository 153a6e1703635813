"""Whether a push from the head node still needs a sweep (slurm_job_api.sweep_trigger): pure, no mocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from slurm_job_api.sweep_trigger import (
    PUSH_CLOCK_MARGIN,
    START_PUSH_SPACING,
    SweepTimes,
    head_node_push,
    sweep_needed,
)

PUSHED_AT = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)
LATER = PUSHED_AT + timedelta(hours=2)  # when the push is handled: long after every sweep of these tests


def last_began(moment: datetime | None, tick_period: timedelta | None = None) -> SweepTimes:
    return SweepTimes(last_sweep_started=moment, tick_period=tick_period)


def push_event(**detail: object) -> dict:
    return {
        "source": "slurm-job-api.head-node",
        "detail-type": "Slurm Job State Change",
        "detail": {"clusterName": "c", "state": "ENDED", "pushedAt": "2026-12-03T12:00:00.000Z", **detail},
    }


def test_a_schedules_event_always_sweeps() -> None:
    assert head_node_push({}) is None
    assert sweep_needed(head_node_push({}), last_began(PUSHED_AT + timedelta(hours=1)), LATER)


def test_a_push_parses_its_detail() -> None:
    jobs = [{"slurmJobId": "42", "state": "ENDED", "exitCode": "0:0"}, {"slurmJobId": "43", "state": "STARTING"}]
    push = head_node_push(push_event(jobs=jobs))
    assert push is not None and push.detail.pushed_at == PUSHED_AT and push.detail.slurm_job_ids == ["42", "43"]


@pytest.mark.parametrize(
    "event",
    [
        push_event(state="RUNNING"),
        push_event(pushedAt="yesterday"),
        {**push_event(), "detail-type": "Something Else"},
        {**push_event(), "detail": "not an object"},
        [push_event()],
    ],
)
def test_a_malformed_push_is_treated_as_a_plain_trigger_and_sweeps(event: object) -> None:
    assert head_node_push(event) is None
    assert sweep_needed(head_node_push(event), last_began(PUSHED_AT + timedelta(hours=1)), LATER)


def test_the_first_push_of_an_environment_sweeps() -> None:
    assert sweep_needed(head_node_push(push_event()), SweepTimes(), LATER)
    assert sweep_needed(head_node_push(push_event(state="STARTING")), SweepTimes(), LATER)


@pytest.mark.parametrize(
    ("last_started", "needed"),
    [
        (PUSHED_AT - timedelta(seconds=5), True),  # the last sweep began before the job ended
        (PUSHED_AT, True),
        (PUSHED_AT + PUSH_CLOCK_MARGIN - timedelta(milliseconds=1), True),  # within the clock margin
        (PUSHED_AT + PUSH_CLOCK_MARGIN, False),  # a sweep that began after the push saw it
        (PUSHED_AT + timedelta(minutes=5), False),
    ],
)
def test_a_push_is_coalesced_only_into_a_sweep_begun_after_it(last_started: datetime, needed: bool) -> None:
    assert sweep_needed(head_node_push(push_event()), last_began(last_started), LATER) is needed


@pytest.mark.parametrize(
    ("since_last_sweep", "needed"),
    [
        (timedelta(seconds=1), False),  # a sweep began (before the start) a moment ago: the next one will see it
        (START_PUSH_SPACING - timedelta(milliseconds=1), False),
        (START_PUSH_SPACING, True),
        (timedelta(minutes=3), True),
    ],
)
def test_a_start_sweeps_only_when_no_sweep_began_for_the_spacing(since_last_sweep: timedelta, needed: bool) -> None:
    last_started = PUSHED_AT - timedelta(milliseconds=500)  # before the push: it has not seen the start
    handled_at = last_started + since_last_sweep
    assert sweep_needed(head_node_push(push_event(state="STARTING")), last_began(last_started), handled_at) is needed


@pytest.mark.parametrize("since_last_sweep", [timedelta(seconds=1), START_PUSH_SPACING, timedelta(minutes=3)])
def test_an_end_not_seen_yet_always_sweeps(since_last_sweep: timedelta) -> None:
    last_started = PUSHED_AT - timedelta(milliseconds=500)
    assert sweep_needed(
        head_node_push(push_event(state="ENDED")), last_began(last_started), last_started + since_last_sweep
    )


def test_a_start_a_sweep_has_seen_is_coalesced() -> None:
    last_started = PUSHED_AT + PUSH_CLOCK_MARGIN
    assert not sweep_needed(head_node_push(push_event(state="STARTING")), last_began(last_started), LATER)


def test_the_schedules_period_is_the_shortest_time_seen_between_two_ticks() -> None:
    times = SweepTimes()
    times.ticked(PUSHED_AT)
    assert times.tick_period is None
    times.ticked(PUSHED_AT + timedelta(seconds=70))  # a tick held back by a long sweep
    times.ticked(PUSHED_AT + timedelta(seconds=130))
    times.ticked(PUSHED_AT + timedelta(seconds=130))  # the same moment again: not a period
    assert times.tick_period == timedelta(seconds=60)


@pytest.mark.parametrize(
    ("since_last_sweep", "needed"),
    [(timedelta(seconds=29), False), (timedelta(seconds=30), True), (timedelta(minutes=5), True)],
)
def test_a_tick_is_answered_by_a_sweep_begun_less_than_half_a_period_before(since_last_sweep, needed) -> None:
    times = last_began(PUSHED_AT, tick_period=timedelta(seconds=60))
    assert sweep_needed(None, times, PUSHED_AT + since_last_sweep) is needed


def test_before_two_ticks_were_seen_every_tick_sweeps() -> None:
    assert sweep_needed(None, last_began(PUSHED_AT), PUSHED_AT + timedelta(milliseconds=1))
