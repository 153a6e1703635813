"""The wait before the next poll grows with the job's time in Slurm, within bounds."""

import pytest

from slurm_job_api.poll_schedule import PollSchedule


def test_never_under_the_minimum_and_a_tenth_of_elapsed_after():
    schedule = PollSchedule(min_seconds=10, max_seconds=21600, fraction=0.1)
    assert schedule.next_wait(0) == 10
    assert schedule.next_wait(50) == 10
    assert schedule.next_wait(1000) == 100
    assert schedule.next_wait(3600) == 360


def test_capped_by_the_maximum():
    assert PollSchedule(min_seconds=10, max_seconds=600, fraction=0.1).next_wait(7 * 86400) == 600


def test_without_accounting_stays_under_half_of_min_job_age():
    schedule = PollSchedule(min_seconds=10, max_seconds=21600, fraction=0.1)
    assert schedule.next_wait(86400, min_job_age=300, accounting=False) == 150
    assert schedule.next_wait(86400, min_job_age=300, accounting=True) == 8640
    assert schedule.next_wait(86400, min_job_age=4, accounting=False) == 10  # never under the minimum


def test_a_week_long_job_costs_a_few_hundred_polls():
    schedule = PollSchedule()
    elapsed, polls = 0, 0
    while elapsed < 7 * 86400:
        elapsed += schedule.next_wait(elapsed)
        polls += 1
    assert 50 < polls < 200


@pytest.mark.parametrize(("minimum", "maximum", "fraction"), [(0, 10, 0.1), (10, 5, 0.1), (1, 10, 0), (1, 10, 1.5)])
def test_invalid_schedules_are_refused(minimum, maximum, fraction):
    with pytest.raises(ValueError, match="invalid poll schedule"):
        PollSchedule(min_seconds=minimum, max_seconds=maximum, fraction=fraction)
