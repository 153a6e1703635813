"""How long to wait before the next poll of a job (pure).

The wait grows with the time the job has spent in Slurm — a fraction of it, never under a minimum — so that the end
of a job is noticed within about that fraction of its run time, while a week-long job costs only a few hundred state
transitions. When the cluster has no accounting, a finished job can be asked about only while slurmctld remembers it
(MinJobAge seconds), so the wait then stays under half of MinJobAge.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PollSchedule:
    min_seconds: int = 10
    max_seconds: int = 21600
    fraction: float = 0.1

    def __post_init__(self) -> None:
        if self.min_seconds < 1 or self.max_seconds < self.min_seconds or not 0 < self.fraction <= 1:
            raise ValueError(f"invalid poll schedule: {self}")

    def next_wait(self, elapsed_seconds: float, *, min_job_age: int | None = None, accounting: bool = True) -> int:
        """Seconds to wait before the next poll of a job that has been in Slurm for `elapsed_seconds`."""
        ceiling = self.max_seconds
        if not accounting and min_job_age:
            ceiling = min(ceiling, max(self.min_seconds, min_job_age // 2))
        wait = int(max(elapsed_seconds, 0) * self.fraction)
        return max(self.min_seconds, min(wait, ceiling))
