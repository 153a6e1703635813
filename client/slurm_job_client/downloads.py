"""Saving the files of a job's output under names that cannot leave the target directory.

The API lists files by their names in the results ("stdout", "tasks/3/stderr", "outputs/<path>", "result.json"); an
output's path is the job's to choose. A name is kept as it is where a file can have it, so that what the job wrote
is what the caller finds, and changed only where it would be unsafe: a part that is empty, "." or ".." becomes
underscores, control characters become "_", a part too long for a file system is shortened, and the result is checked
to resolve inside the directory (a symlink already there cannot lead the file out either).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from slurm_job_client.transport import stream_url

ProgressCallback = Callable[[str, int, "int | None"], None]
_UNSAFE_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
_SEPARATORS = r"[/\\]" if os.sep == "\\" else "/"
MAX_PART_BYTES = 255  # the longest file name of common file systems


def safe_relative_path(name: str) -> Path:
    """A relative path for a listed file name: its "/"-separated parts, each one a plain file name."""
    parts = []
    for part in re.split(_SEPARATORS, name):
        part = _UNSAFE_CHARACTERS.sub("_", part)
        if part in ("", ".", ".."):
            part = "_" * max(1, len(part))
        while len(part.encode("utf-8", "surrogateescape")) > MAX_PART_BYTES:
            part = part[:-1]
        parts.append(part)
    return Path(*parts)


def target_path(directory: Path, name: str) -> Path:
    """Where ``name`` is saved under ``directory``; ValueError if it would resolve outside (a planted symlink)."""
    root = directory.resolve()
    path = root / safe_relative_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    resolved_parent = path.parent.resolve()
    if resolved_parent != root and root not in resolved_parent.parents:
        raise ValueError(f"{name!r} would be saved outside {root}")
    if path.is_symlink():
        raise ValueError(f"{path} is a symlink: not writing through it")
    return path


def save_file(
    directory: Path, name: str, url: str, size: int | None = None, progress: ProgressCallback | None = None
) -> Path:
    """Downloads ``url`` to ``directory``/``name`` (made safe), written whole or not at all; the path."""
    path = target_path(directory, name)
    done = 0
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".sja-download-")
    try:
        with os.fdopen(descriptor, "wb") as file:
            for total, chunk in stream_url(url):
                file.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(name, done, total if total is not None else size)
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current
