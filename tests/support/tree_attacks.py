"""What the bookkeeping attacks share: the program of a job (or a user's process) that keeps renaming the tree of job
directories, and removing whatever such attacks leave behind. Used by the head-node program's tests as root
(tests/unit/test_head_node_bookkeeping.py) and by the real-Slurm attack test (tests/security)."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

# Run as `python3 -c RENAMING_LOOP TREE SENSITIVE STATE STOP REPORT` in the user's home: until STOP exists (or 10
# minutes have passed), renames TREE onto one of 64 names (so that the home does not fill up), puts its own directory,
# a symlink to SENSITIVE or a symlink to a moved tree in its place, and tries to rename the state directory STATE and
# its parents. Then writes its counts as JSON to REPORT ("-": stdout).
RENAMING_LOOP = textwrap.dedent(
    """
    import json, os, sys, time
    tree, sensitive, state, stop, report = sys.argv[1:6]
    counts = {"renamed": 0, "moved jobs": 0, "state renamed": 0, "state refused": 0}
    n, deadline = 0, time.monotonic() + 600
    while not os.path.exists(stop) and time.monotonic() < deadline:
        n += 1
        aside = ".moved-%d" % (n % 64)
        try:
            os.rename(tree, aside)
            counts["renamed"] += 1
            counts["moved jobs"] += bool(os.path.isdir(aside) and os.listdir(aside))
        except OSError:
            pass
        try:
            if n % 3 == 0:
                os.symlink(sensitive, tree)
            elif n % 3 == 1:
                os.mkdir(tree)
            else:
                os.symlink(".moved-%d" % ((n - 1) % 64), tree)
        except OSError:
            pass
        for target in (state, os.path.dirname(state), os.path.join(state, "users")):
            try:
                os.rename(target, target + ".moved")
                counts["state renamed"] += 1
            except OSError:
                counts["state refused"] += 1
        time.sleep(0.001)
    if report == "-":
        print(json.dumps(counts))
    else:
        with open(report, "w") as out:
            json.dump(counts, out)
    """
)


def remove(path: Path) -> None:
    """Removes a file or a whole tree, whoever owns it and however an attack closed it."""
    if path.is_dir() and not path.is_symlink():
        for inner in [path, *path.rglob("*")]:
            if inner.is_dir() and not inner.is_symlink():
                inner.chmod(0o700)
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
