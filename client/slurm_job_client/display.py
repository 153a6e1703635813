"""What the command line shows: a job's status block (redrawn in place on a terminal), tables, download progress."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, TextIO

# ANSI/VT100: cursor to the start of the line n lines up, erase the line, erase to the end of the screen.
CURSOR_UP_LINES = "\x1b[{}F"
ERASE_LINE = "\x1b[2K"
ERASE_BELOW = "\x1b[J"


def timestamp(text: str | None) -> datetime | None:
    """An API time (ISO 8601 in UTC, e.g. 2026-11-25T12:00:01.104Z) as an aware datetime; None if absent."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def duration(seconds: float) -> str:
    """Like Slurm's elapsed time: [D-]HH:MM:SS."""
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds_left = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{seconds_left:02d}"
    return f"{days}-{clock}" if days else clock


def elapsed(view: Mapping[str, Any], now: datetime) -> str:
    """Time since the job started (running), or its run time (ended); "-" before it started."""
    started = timestamp(view.get("startedAt"))
    if started is None:
        return "-"
    ended = timestamp(view.get("endedAt")) or now
    return duration((ended - started).total_seconds())


def task_counts(view: Mapping[str, Any]) -> str:
    counts = view.get("arrayTaskCounts") or {}
    return ", ".join(f"{status} {count}" for status, count in sorted(counts.items()) if count)


def status_lines(view: Mapping[str, Any], now: datetime) -> list[str]:
    """The status block of ``sja watch`` (and ``sja status``): one field per line."""
    name = f" ({view['name']})" if view.get("name") else ""
    slurm = view.get("slurmJobId")
    state = view.get("status", "?")
    if view.get("slurmState") and view.get("slurmState") != state:
        state += f" (Slurm {view['slurmState']})"
    lines = [
        f"job      {view.get('jobId', '?')}{name}",
        f"status   {state}" + (f", Slurm job {slurm}" if slurm else ""),
        f"reason   {view.get('reason') or '-'}",
        f"elapsed  {elapsed(view, now)}",
    ]
    if view.get("arrayTaskCounts"):
        lines.append(f"tasks    {task_counts(view)}")
    if view.get("exitCode") is not None or view.get("signal") is not None:
        lines.append(f"exit     {view.get('exitCode')}" + (f", signal {view['signal']}" if view.get("signal") else ""))
    if view.get("cause") and view.get("status") not in ("COMPLETED",):
        lines.append(f"cause    {' '.join(str(view['cause']).split())}")
    return lines


def status_line(view: Mapping[str, Any], now: datetime) -> str:
    """The block on one line, for output that is not a terminal."""
    parts = [view.get("status", "?")]
    if view.get("reason"):
        parts.append(f"reason {view['reason']}")
    parts.append(f"elapsed {elapsed(view, now)}")
    if view.get("arrayTaskCounts"):
        parts.append(f"tasks {task_counts(view)}")
    if view.get("exitCode") is not None:
        parts.append(f"exit {view['exitCode']}")
    return f"{view.get('jobId', '?')} " + " ".join(parts)


class StatusBoard:
    """Shows successive views of a job: on a terminal the block is redrawn in place (the cursor goes back up over
    the previous block, no scrolling); elsewhere a line is printed whenever what it says changes."""

    def __init__(self, out: TextIO = sys.stdout, terminal: bool | None = None) -> None:
        self.out = out
        self.terminal = out.isatty() if terminal is None else terminal
        self.drawn = 0
        self.last_line: str | None = None

    def show(self, view: Mapping[str, Any], now: datetime | None = None) -> None:
        now = now or datetime.now(timezone.utc)
        if self.terminal:
            # A line wider than the terminal would wrap onto two, and the next redraw would go up one line short.
            width = shutil.get_terminal_size().columns - 1
            lines = [line[:width] for line in status_lines(view, now)]
            text = (CURSOR_UP_LINES.format(self.drawn) if self.drawn else "") + "".join(
                f"{ERASE_LINE}{line}\n" for line in lines
            )
            self.out.write(text + ERASE_BELOW)
            self.drawn = len(lines)
        else:
            what = status_line({**view, "startedAt": None}, now)  # the line without its clock
            if what != self.last_line:
                self.out.write(status_line(view, now) + "\n")
                self.last_line = what
        self.out.flush()


def table(rows: Iterable[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Rows as a text table: ``columns`` are (key, heading); missing values are "-"."""
    cells = [[heading for _, heading in columns]]
    cells += [["-" if row.get(key) is None else str(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(line[index]) for line in cells) for index in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in cells
    )


def size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


class DownloadProgress:
    """Progress of each file on a terminal (one line per file, rewritten in place), for files of at least
    ``threshold`` bytes; a file's name once it is saved otherwise."""

    def __init__(self, out: TextIO = sys.stderr, terminal: bool | None = None, threshold: int = 1 << 20) -> None:
        self.out = out
        self.terminal = out.isatty() if terminal is None else terminal
        self.threshold = threshold

    def __call__(self, name: str, done: int, total: int | None) -> None:
        if not self.terminal or (total or done) < self.threshold:
            return
        share = f" {100 * done // total:3d}%" if total else ""
        self.out.write(f"\r{ERASE_LINE}{name}  {size(done)}" + (f" of {size(total)}" if total else "") + share)
        if total is not None and done >= total:
            self.out.write("\n")
        self.out.flush()
