"""Hostile job specs for the security tests: one generator, two ways to drive it.

Every field of the job spec (README "The job spec") gets values an attacker would try: shell metacharacters and
command substitutions, option look-alikes, path traversal, control characters, long strings, unusual Unicode, numbers
out of range or of the wrong type, nested objects. Payloads that would run a command are *canaries*: each creates its
own file under /tmp if any shell, anywhere, ever evaluates it (`$(touch …)`, backticks, `; touch …`, a newline then
`touch …`, redirections that need no PATH), so a test proves "nothing was evaluated" by finding none of those files.

The generator draws from a :class:`Source`. :class:`HypothesisSource` wraps hypothesis's ``st.data()`` (property-based
tests, shrinking); :class:`RandomSource` wraps a seeded ``random.Random`` (a fixed corpus: :func:`corpus`). Both run
the same code, so the corpus is a sample of exactly what the property-based test explores.

The generator only *intends* a value to be valid or not; whether the API must accept a spec is decided independently
by the tests (tests/security/spec_oracle.py), from the documented rules.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from hypothesis import strategies as st

from tests.security.spec_oracle import BOOLEAN_FIELDS, DEPENDENCY_TYPES, INT_RANGES, SBATCH_OPTION_FIELDS, SPEC_FIELDS

T = TypeVar("T")

CANARY_DIRECTORY = Path("/tmp")
CANARY_PREFIX = "sjapi-canary-"
BENIGN_SCRIPT = "#!/bin/sh\ntrue\n"
INT_FIELDS = tuple(INT_RANGES)
NAME_FIELDS = ("name", "partition", "account", "qos")
# Fields a spec leaves out most of the time: the rarer resources, and what the local cluster cannot run (no GPU,
# feature, reservation or license is configured there: sbatch refuses those, and the job ends SUBMIT_FAILED).
RARE_FIELDS = ("account", "qos", "dependency", *SBATCH_OPTION_FIELDS)
UNRUNNABLE_FIELDS = ("gpus", "gpusPerNode", "gpusPerTask", "gres", "constraint", "reservation", "licenses")
GPU_LISTS = ["1", "2", "a100:2", "a100:2,v100:1", "nvidia_a100-80gb:8", "0_.-:1", "g" * 32 + ":999999999"]
GRES_LISTS = ["gpu", "gpu:1", "gpu:a100:2,shard:1", "nvme:100G", "mps:50,gpu:tesla:1", "uid.0:1", "wrap:2"]
CONSTRAINTS = ["intel", "c5.xlarge&efa", "a|b", "[rack1*2&rack2*4]", "(knl&snc4&flat)*4&haswell", "[(a&b)|c]", "_-"]
LICENSE_LISTS = ["matlab", "matlab:2,ansys", "fluent@flexlm1:10", "a.b-c_d", "uid.0@x:1", "l" * 32]
# Begin times: far off (a job would wait), and those a job on the local cluster may start at once.
BEGIN_TIMES = ["now+1hour", "now+2weeks", "2099-12-31T23:59:59", "2028-02-29", "18:00", "00:00:59", "now+9999999"]
RUNNABLE_BEGIN_TIMES = ["now", "now+1", "now+2seconds", "2020-02-29T12:00", "2021-01-01"]
# Values Slurm's own syntax might take but the documented rules refuse, and look-alikes of other options.
SBATCH_OPTION_TRICKS: dict[str, list[Any]] = {
    "gpus": ["0", "-1", "a100:", ":2", "a100:2,", "a100 2", "01", "\uff12", "gpu:a100:2", "1" * 65, "--wrap=x"],
    "gres": ["gpu:", "gpu::2", "gpu:a100:0", "gpu:1;id", "gpu:1\n", "gpu:1\x00", "gpu:1 ", "g" * 129, "--wrap=x"],
    "constraint": ["a&", "&a", "a||b", "(a", "a)", "[a&[b]]", "[a)", "a b", "!a", "a&" * 64 + "a", "a\x01", "--wrap=x"],
    "reservation": ["a,b", "-r", "--wrap=x", "r" * 65, "a b"],
    "licenses": ["matlab:0", "matlab:", "matlab:2,", "@db", "a|b", "a:1:2", "l" * 129, "--wrap=x"],
    "begin": ["later", "now-1hour", "now+1year", "now+1 hour", "2026-13-01", "2026-02-30", "24:00", "18:60", "--begin"],
}
for _field in ("gpusPerNode", "gpusPerTask"):
    SBATCH_OPTION_TRICKS[_field] = SBATCH_OPTION_TRICKS["gpus"]
SBATCH_OPTION_TRICKS["begin"] += ["2026-12-24 18:00", "18:00:00\n", "\uff11\uff18:00", "now+12345678", "0000-01-01"]
BOOLEAN_TRICKS: list[Any] = [1, 0, "true", "false", "yes", "", [True], {"value": True}, "--exclusive"]


# ---------------------------------------------------------------------------------------------------------- canaries


class Canaries:
    """Hands out canary file paths (one per payload) and finds the ones that exist."""

    def __init__(self, run_id: str | None = None) -> None:
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.paths: list[str] = []

    def path(self) -> str:
        path = str(CANARY_DIRECTORY / f"{CANARY_PREFIX}{self.run_id}-{len(self.paths)}")
        self.paths.append(path)
        return path

    def fired(self) -> list[str]:
        """Canary files that exist: every path handed out, and anything else with this run's prefix."""
        found = {path for path in self.paths if Path(path).exists() or Path(path).is_symlink()}
        found.update(str(path) for path in CANARY_DIRECTORY.glob(f"{CANARY_PREFIX}{self.run_id}-*"))
        return sorted(found)


def canary_payloads(path: str) -> list[str]:
    """Texts that create `path` if a shell (or a Python eval, or an option parser) ever interprets them."""
    return [
        f"$(touch {path})",
        f"`touch {path}`",
        f"; touch {path}",
        f"&& touch {path}",
        f"|| touch {path} ||",
        f"| touch {path}",
        f"\ntouch {path}\n",
        f"\r\ntouch {path}\r\n",
        f"$(/usr/bin/touch {path})",
        f"$(>{path})",  # needs no PATH: a redirection creates the file
        f";>{path}",
        f"'; touch {path}; '",
        f'"; touch {path}; "',
        f'"$(touch {path})"',
        f"--wrap=touch {path}",
        f"x --wrap='touch {path}'",
        f"\x00; touch {path}",
        f"%0atouch%20{path}",
        f"__import__('os').system('touch {path}')",
        f"-o ProxyCommand=touch {path}",
        f"() {{ :; }}; touch {path}",  # shellshock
    ]


# ---------------------------------------------------------------------------------------------------------- sources


class Source(Protocol):
    """Where the generator's choices come from."""

    def pick(self, options: Sequence[T]) -> T: ...

    def integer(self, low: int, high: int) -> int: ...

    def chance(self, percent: int) -> bool: ...

    def text(self, max_size: int, alphabet: str | None = None) -> str: ...


class RandomSource:
    """Choices from a seeded random.Random: the same seed gives the same corpus."""

    # Code points worth more than their share: controls, bidi/zero-width marks, separators, surrogates, the edges.
    _SPECIAL: ClassVar[list[int]] = [
        *range(0, 32),
        0x7F,
        0x85,
        0xA0,
        0x200B,
        0x200D,
        0x202E,
        0x2028,
        0x2029,
        0xFEFF,
        0xD800,
        0xDFFF,
    ]
    _SPECIAL += [0xFFFF, 0x10FFFF, 0x1F680, 0x0661, 0xFF15, 0x0435, 0x0301]

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    def pick(self, options: Sequence[T]) -> T:
        return options[self.random.randrange(len(options))]

    def integer(self, low: int, high: int) -> int:
        return self.random.randint(low, high)

    def chance(self, percent: int) -> bool:
        return self.random.randrange(100) < percent

    def text(self, max_size: int, alphabet: str | None = None) -> str:
        size = self.random.randint(0, max_size)
        if alphabet is not None:
            return "".join(self.random.choice(alphabet) for _ in range(size))
        return "".join(chr(self._code_point()) for _ in range(size))

    def _code_point(self) -> int:
        roll = self.random.randrange(10)
        if roll < 5:
            return self.random.randint(0x20, 0x7E)
        if roll < 8:
            return self.random.choice(self._SPECIAL)
        return self.random.randint(0, 0x10FFFF)


class HypothesisSource:
    """Choices drawn from hypothesis (``st.data()``), so failures shrink to a minimal spec."""

    # Every code point, surrogates and unassigned ones included (hypothesis leaves out surrogates by default).
    ANY_CHARACTER = st.characters(exclude_categories=())

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def pick(self, options: Sequence[T]) -> T:
        return self.data.draw(st.sampled_from(options))

    def integer(self, low: int, high: int) -> int:
        return self.data.draw(st.integers(low, high))

    def chance(self, percent: int) -> bool:
        return self.data.draw(st.integers(0, 99)) < percent

    def text(self, max_size: int, alphabet: str | None = None) -> str:
        characters = st.sampled_from(alphabet) if alphabet is not None else self.ANY_CHARACTER
        return self.data.draw(st.text(characters, max_size=max_size))


# ------------------------------------------------------------------------------------------------ hostile atoms

OPTION_LOOK_ALIKES = [
    "--uid=0",
    "-p",
    "-pdebug",
    "--partition=debug",
    "--wrap=id",
    "--export=ALL,LD_PRELOAD=/tmp/x.so",
    "--chdir=/root",
    "--output=/etc/cron.d/x",
    "-D/",
    "--",
    "-",
    "--help",
    "-v",
    "--test-only",
    "--get-user-env",
    "--uid=root --gid=root",
    "-o /etc/passwd",
]
PATH_TRICKS = [
    "..",
    ".",
    "../",
    "./x",
    "../../../../etc/passwd",
    "/etc/shadow",
    "/",
    "//",
    "/root",
    "/tmp/../root",
    "a/../../b",
    "~",
    "~root/.ssh/authorized_keys",
    "/proc/self/environ",
    "/dev/zero",
    "/dev/stdin",
    "a//b",
    "a/",
    "..\\..\\windows",
    "%2e%2e%2f",
    "...",
    "/.../x",
    "link -> /etc",
]
UNICODE_TRICKS = [
    "\u202e",
    "\u202egnp.exe",
    "\u200b",
    "a\u200db",
    "\ufeff",
    "🚀",
    "💣$(x)",
    "\uff44\uff45\uff42\uff55\uff47",  # fullwidth "debug"
    "d\u0435bug",  # Cyrillic "e": a homoglyph of "debug"
    "e\u0301",
    "\u2028",
    "\u2029",
    "\u0085",
    "\u0661\u0662\u0663"  # Arabic-Indic digits,
    "\uff15",
    "\U0001f4a9" * 10,
    "\ud800",
    "a\udfff",
    "\uffff",
    "\U0010ffff",
    "Ω≈ç√",
]
CONTROL_CHARACTERS = ["\x00", "\n", "\r", "\t", "\x1b[2J", "\x7f", "\x08", "\x0b\x0c", "a\nb", "a\x00b"]
METACHARACTERS = [
    "'",
    '"',
    "`",
    "\\",
    "$",
    "$HOME",
    "${HOME}",
    "$((1+1))",
    "*",
    "?",
    "[a-z]",
    "{a,b}",
    "!",
    "#",
    "&",
    "|",
    ";",
    "<",
    ">",
    ">>",
    "()",
    "%s%s%n",
    "%j%u%x",
    "{0}",
    "' OR '1'='1",
    "null",
    "true",
    "<script>alert(1)</script>",
    "${jndi:ldap://127.0.0.1/a}",
]
WRONG_NUMBERS: list[Any] = [
    0,
    -1,
    -(2**63),
    2**31,
    2**32,
    2**63,
    2**64,
    10**30,
    1.5,
    -0.0,
    1e308,
    float("inf"),
    float("nan"),
    True,
    False,
    "",
    "1e3",
    "0x10",
    "-1",
    "0",
    "\u0661",
    "\uff15",
    "1.5",
    "NaN",
    "1 2",
]
# The integer 1 in another JSON type, which a lax parser would read as 1: the API must refuse each (JSON integers only).
LAX_NUMBERS: list[Any] = ["1", "+1", "001", " 1", "1\n", "0_1", 1.0, True]
WRONG_TYPES: list[Any] = [None, [], [1], {}, {"a": 1}, ["$(x)"], {"$(x)": "y"}, 0, "x"]


def nested(depth: int) -> Any:
    value: Any = "deep"
    for level in range(depth):
        value = {"a": value} if level % 2 else [value]
    return value


# ------------------------------------------------------------------------------------------------------ the cases


@dataclass(frozen=True)
class Targets:
    """What a spec may name: job ids for dependencies (the caller's own unfinished jobs, and jobs the caller cannot
    see), and script objects (the caller's own inputs prefix, and an object another caller uploaded)."""

    mine: tuple[str, ...] = ()
    foreign: tuple[str, ...] = ()
    my_inputs: str = "inputs/"
    foreign_input: str = "inputs/someone-else/script.sh"


@dataclass
class Case:
    """One request body to POST /jobs, and the inputs/ objects to create before sending it."""

    number: int
    body: Any
    uploads: dict[str, bytes] = field(default_factory=dict)
    canaries: list[str] = field(default_factory=list)

    def json_text(self) -> str:
        """The body as sent: NaN and Infinity included (Python's JSON parser takes them)."""
        return json.dumps(self.body, allow_nan=True)


class HostileSpecs:
    """Builds hostile cases from a Source. `targets` are dependency targets. With `runnable`, the resources of specs
    meant to be valid stay within what the local one-node Slurm cluster can run (1 node, 16 CPUs), so that no accepted
    job waits forever for resources it cannot get; the values meant to be refused are the same either way."""

    def __init__(self, canaries: Canaries, targets: Targets = Targets(), runnable: bool = False) -> None:
        self.canaries = canaries
        self.targets = targets
        self.runnable = runnable
        self.max_valid_tasks = 3 if runnable else 4
        self._count = 0
        self._case_canaries: list[str] = []

    # -- helpers -------------------------------------------------------------------------------------------------

    def canary(self, source: Source) -> str:
        path = self.canaries.path()
        self._case_canaries.append(path)
        return source.pick(canary_payloads(path))

    def hostile_text(self, source: Source, max_size: int = 80) -> str:
        """Any text an attacker might send: a canary, a trick, random code points, or a mix with a valid prefix."""
        roll = source.integer(0, 9)
        if roll <= 2:
            return self.canary(source)
        if roll == 3:
            return source.pick(OPTION_LOOK_ALIKES)
        if roll == 4:
            return source.pick(PATH_TRICKS)
        if roll == 5:
            return source.pick(UNICODE_TRICKS + CONTROL_CHARACTERS)
        if roll == 6:
            return source.pick(METACHARACTERS)
        if roll == 7:
            return source.text(max_size)
        if roll == 8:
            return source.pick(["debug", "hello", "1", "out.txt", "/tmp"]) + self.hostile_text(source, max_size)
        return source.pick(["A" * 65, "x" * 1025, "/" + "a/" * 2100, "é" * 40_000, "$(" * 500])

    def hostile_value(self, source: Source) -> Any:
        """A value of any JSON type, hostile in content or in type."""
        roll = source.integer(0, 9)
        if roll <= 5:
            return self.hostile_text(source)
        if roll == 6:
            return source.pick(WRONG_NUMBERS + LAX_NUMBERS)
        if roll == 7:
            return source.pick(WRONG_TYPES)
        if roll == 8:
            return nested(source.pick([2, 10, 50]))
        return [self.hostile_text(source), {"$(x)": self.canary(source)}]

    def one_line(self, source: Source) -> str:
        """Hostile text that stays on one line of a shell script (for a comment in a benign script)."""
        text = self.hostile_text(source)
        return "".join(c for c in text if c not in "\x00\r\n" and not 0xD800 <= ord(c) <= 0xDFFF)

    # -- valid-looking values (what the API should take, however strange) --------------------------------------

    def valid(self, name: str, source: Source) -> Any:
        maker: dict[str, Callable[[Source], Any]] = {
            "name": self._valid_name,
            "partition": lambda s: s.pick(["debug", "debug", "debug", *self._valid_name_list(s)]),
            "account": lambda s: s.pick(self._valid_name_list(s)),
            "qos": lambda s: s.pick(["normal", *self._valid_name_list(s)]),
            "nodes": lambda s: s.pick([1] if self.runnable else [1, 1, 1, 2, 100_000]),
            "ntasks": lambda s: s.pick([1, 2] if self.runnable else [1, 1, 2, 16, 10_000_000]),
            "cpusPerTask": lambda s: s.pick([1, 2] if self.runnable else [1, 1, 2, 4096]),
            "memoryMB": lambda s: s.pick([1, 16, 100] if self.runnable else [1, 16, 100, 1024, 1024**3]),
            "timeLimitMinutes": lambda s: s.pick([1, 5, 60, 527_040]),
            "array": self._valid_array,
            "dependency": self._valid_dependency,
            "environment": self._valid_environment,
            "workingDirectory": self._valid_working_directory,
            "outputs": self._valid_outputs,
            # Runnable: room on the one node for every task of a runnable spec (ntasks 1 or 2); fewer would need more
            # nodes, and slurmctld would refuse the job and still account it (FAILED, never run).
            "ntasksPerNode": lambda s: s.pick([2] if self.runnable else [1, 2, 64, 4096]),
            "memoryPerCpuMB": lambda s: s.pick([1, 16, 100] if self.runnable else [1, 100, 1024**3]),
            "gpus": lambda s: s.pick(GPU_LISTS),
            "gpusPerNode": lambda s: s.pick(GPU_LISTS),
            "gpusPerTask": lambda s: s.pick(GPU_LISTS),
            "gres": lambda s: s.pick(GRES_LISTS),
            "constraint": lambda s: s.pick(CONSTRAINTS),
            "reservation": lambda s: s.pick(self._valid_name_list(s)),
            "licenses": lambda s: s.pick(LICENSE_LISTS),
            "begin": lambda s: s.pick(RUNNABLE_BEGIN_TIMES if self.runnable else BEGIN_TIMES + RUNNABLE_BEGIN_TIMES),
            # A negative adjustment needs privileges Slurm does not give the cluster user.
            "nice": lambda s: s.pick([0, 1, 2_147_483_645] if self.runnable else [0, 1, -20, 2_147_483_645]),
            # An exclusive job waits for the whole node: now and then only on the shared local cluster.
            "exclusive": lambda s: s.pick([False, False, False, True] if self.runnable else [True, False]),
            "requeue": lambda s: s.pick([True, False]),
        }
        return maker[name](source)

    def _valid_name_list(self, source: Source) -> list[str]:
        return ["a", "_", "job-1", "x.y-z", "A" * 64, "0", "uid.0", "wrap", "a--uid", "_--", self._valid_name(source)]

    def _valid_name(self, source: Source) -> str:
        first = "ABCXYZabcxyz019_"
        rest = "ABCXYZabcxyz019_.-"
        return source.pick(first) + source.text(source.pick([3, 20, 63]), rest)

    def _valid_array(self, source: Source) -> str:
        start = source.pick([0, 1, 7, 99])
        span = source.integer(0, self.max_valid_tasks - 1)
        return source.pick(
            [
                str(start),
                f"{start}-{start + span}",
                f"{start}-{start + span}%1",
                f"{start},{start + 2}",
                f"{start}-{start + 2 * span}:2",
            ]
        )

    def _valid_dependency(self, source: Source) -> list[dict]:
        if not self.targets.mine:
            return self.hostile_dependency(source)
        entries = []
        for _ in range(source.integer(1, 3)):
            entry: dict[str, Any] = {"jobId": source.pick(self.targets.mine)}
            if source.chance(70):
                entry["type"] = source.pick(DEPENDENCY_TYPES)
            entries.append(entry)
        return entries

    def _valid_environment(self, source: Source) -> dict[str, str]:
        names = ["A", "_", "BASH_ENV", "ENV", "LD_PRELOAD", "PATH", "IFS", "PS4", "PROMPT_COMMAND", "HOME", "SHELL"]
        names += ["SLURM", "sbatch", "x" * 128, "a1"]
        environment = {}
        for _ in range(source.integer(0, 4)):
            value = self.hostile_text(source)
            value = "".join(c for c in value if c != "\x00" and not 0xD800 <= ord(c) <= 0xDFFF)[:5000]
            environment[source.pick(names)] = value
        return environment

    def _valid_working_directory(self, source: Source) -> str:
        return source.pick(
            [
                "/tmp",
                "/",
                "//",
                f"/tmp/{self.canary(source).replace(chr(10), ' ').replace(chr(13), ' ').replace(chr(0), ' ')}",
                "/tmp/a b",
                "/tmp/'q'",
                "/tmp/🚀",
                "/tmp/\u202e",
                "/dev/null",
                "/etc",
                "/root",
                "/tmp/-p",
                "/tmp/--uid=0",
                "/tmp/%j%u",
                "/tmp/...",
            ]
        )

    def _valid_outputs(self, source: Source) -> list[str]:
        options = ["out.txt", "a b/c", "-rf", "--uid=0", "🚀.txt", "...", "proc/self/environ", "dev/zero", "x" * 1024]
        options += ["%j", "a'b", "*", "\u202etxt.exe"]
        options.append(self.one_line(source).replace("/", "_").lstrip(".") or "empty")
        chosen = [source.pick(options) for _ in range(source.integer(0, 3))]
        return list(dict.fromkeys(chosen))

    # -- values meant to be refused ---------------------------------------------------------------------------------

    def hostile(self, name: str, source: Source) -> Any:
        specific: dict[str, list[Any]] = {
            "name": ["A" * 65, "-p", "--uid=0", "a b", "a/b", ".hidden", "-", "", "a=b"],
            "array": [
                "1-1001",
                f"0-{10**20}",
                "3-1",
                "1-3:0",
                "1-3\n",
                " 1-3",
                "1-3 ",
                "\u0661-\u0663",
                "1-3;touch x",
                "1--3",
                "%2",
                "",
                ",",
                "1-3%",
                "1" * 300,
            ],
            "scriptS3Key": [
                *self.foreign_script_keys(),
                "inputs/../x",
                "inputs/./x",
                "inputs//x",
                "inputs/",
                "../inputs/x",
                "/inputs/x",
                "inputs/x\n",
                "Inputs/x",
                "inputs/a b",
                "inputs/" + "a" * 1100,
                "jobs/0b6f1c9e-3f7a-4c1e-9a53-2a8f6f2b9d10/input/script.sh",
                "inputs/missing-" + uuid.UUID(int=source.integer(0, 2**64)).hex,
                self.targets.my_inputs + "missing-" + uuid.UUID(int=source.integer(0, 2**64)).hex,
            ],
            "environment": [
                {"SLURM_X": "1"},
                {"slurm_x": "1"},
                {"SBATCH_EXPORT": "ALL"},
                {"SRUN_X": "1"},
                {"Salloc_x": "1"},
                {"A B": "1"},
                {"1A": "1"},
                {"": "1"},
                {"A=B": "1"},
                {"A": "\x00"},
                {"A": 1},
                {"A": None},
                {"A": ["x"]},
                {"A" * 129: "1"},
                {"BASH_FUNC_x%%": "() { :; }"},
                {"A": "x" * 70_000},
                {f"V{index}": "1" for index in range(257)},
                {"A": "\ud800"},
            ],
            "workingDirectory": [
                "relative",
                "",
                "tmp/x",
                "/tmp/../etc",
                "/tmp/./x",
                "/tmp/\n",
                "/tmp/\x00",
                "/" + "a" * 4096,
                "~/x",
                "/tmp/\ud800",
                "/tmp/\x1b",
            ],
            "outputs": [
                ["/etc/passwd"],
                ["../x"],
                ["a/../b"],
                [""],
                ["a//b"],
                ["a/"],
                ["x\n"],
                ["x", "x"],
                ["x"] * 101,
                ["a" * 1025],
                "x",
                [1],
                [None],
                ["./x"],
                ["a\ud800"],
            ],
            "dependency": [],
            **SBATCH_OPTION_TRICKS,
            **dict.fromkeys(BOOLEAN_FIELDS, BOOLEAN_TRICKS),
        }
        if name == "dependency":
            return self.hostile_dependency(source)
        pool = specific.get(name, [])
        roll = source.integer(0, 9)
        if pool and roll < 4:
            return source.pick(pool)
        if name in INT_FIELDS and roll < 7:
            return source.pick([*WRONG_NUMBERS, *LAX_NUMBERS, self.canary(source), f"1; {self.canary(source)}"])
        return self.hostile_value(source)

    def foreign_script_keys(self) -> list[str]:
        """Keys outside the caller's own inputs prefix, or tricks on it: another caller's object (it exists) and
        their prefix, look-alikes of the caller's prefix, the prefix itself, traversal and encodings out of it."""
        mine, theirs = self.targets.my_inputs, self.targets.foreign_input
        their_prefix = theirs.rsplit("/", 2)[0] + "/"
        return [
            theirs,
            their_prefix + "run.sh",
            theirs.replace(their_prefix, mine.rstrip("/")),  # my prefix's characters without its "/"
            theirs.replace(their_prefix, "inputs/" + mine[len("inputs/") :].upper()),  # keys are case-sensitive
            mine,
            mine.rstrip("/"),
            mine + "../" + theirs[len("inputs/") :],
            mine + "%2e%2e/" + theirs[len("inputs/") :],
            mine + "..%2F" + theirs[len("inputs/") :],
            "inputs/" + theirs,
            "inputs/run.sh",
            "jobs/../" + theirs,
        ]

    def hostile_dependency(self, source: Source) -> Any:
        mine = source.pick(self.targets.mine) if self.targets.mine else str(uuid.UUID(int=source.integer(0, 2**128)))
        foreign = source.pick(self.targets.foreign) if self.targets.foreign else mine
        return source.pick(
            [
                [],
                [{}],
                [{"jobId": self.canary(source)}],
                [{"jobId": mine, "type": "afterok;" + self.canary(source)}],
                [{"jobId": mine, "type": "singleton"}],
                [{"jobId": mine, "extra": 1}],
                [{"jobId": foreign}],
                [{"jobId": str(uuid.UUID(int=source.integer(0, 2**128 - 1)))}],
                [{"jobId": mine.upper()}],
                [{"jobId": "12345"}],
                {"jobId": mine},
                [{"jobId": mine}] * 33,
                [{"jobId": [mine]}],
                self.hostile_value(source),
            ]
        )

    # -- whole cases ----------------------------------------------------------------------------------------------

    def case(self, source: Source, focus: str | None = None) -> Case:
        """One case. A `focus` field is always in it, half the time with a value meant to be refused, half the time
        with a valid one of hostile content, and the other fields are broken now and then; without a focus, about
        half the cases mean every field to be valid (however odd its content) and the others break 1 to 3 fields."""
        self._count += 1
        self._case_canaries = []
        number = self._count
        if focus is None and source.chance(3):
            body: Any = source.pick([[], "text", 42, None, [BENIGN_SCRIPT], nested(30)])
            return Case(number, body, canaries=self._case_canaries)
        keep_valid = 50 if focus is None else 80  # with a focus, the other fields stay valid more often
        broken = set() if source.chance(keep_valid) else {source.pick(SPEC_FIELDS) for _ in range(source.integer(1, 3))}
        if focus is not None:
            broken.discard(focus)
            if source.chance(50):
                broken.add(focus)
        body, uploads = {}, {}
        self._script(source, body, uploads, number, focus if focus not in broken else None)
        for name in SPEC_FIELDS:
            if name in broken:
                body[name] = self._hostile_script(source) if name == "script" else self.hostile(name, source)
            elif name in ("script", "scriptS3Key"):
                continue
            elif name == focus or source.chance(self._inclusion_percent(name)):
                body[name] = self.valid(name, source)
        if focus is None and source.chance(5):
            body[source.pick(["cpus_per_task", "uid", "__proto__", "", "name ", "NAME", "sbatchOptions"])] = 1
        return Case(number, body, uploads, canaries=self._case_canaries)

    def _inclusion_percent(self, name: str) -> int:
        """How often a valid value of a field that is not the case's focus is in the case: on a runnable corpus the
        fields this cluster cannot hold seldom, so that most accepted jobs still run on Slurm."""
        if self.runnable and name in UNRUNNABLE_FIELDS:
            return 2
        return 8 if name in RARE_FIELDS else 30

    def unknown_field_case(self, source: Source) -> Case:
        """A valid spec with one more field, of any name (the API refuses unknown fields) and any value."""
        self._count += 1
        self._case_canaries = []
        name = source.pick([source.text(20), "cpus_per_task", "sbatchOptions", "uid", "__proto__", "Name", "script "])
        body = {"script": BENIGN_SCRIPT, name: self.hostile_value(source)}
        return Case(self._count, body, canaries=self._case_canaries)

    def _script(self, source: Source, body: dict, uploads: dict[str, bytes], number: int, focus: str | None) -> None:
        """The script, inline or from inputs/ (an object uploaded first), now and then both or neither."""
        roll = {"script": 0, "scriptS3Key": 90}.get(focus or "", source.integer(0, 99))
        script = BENIGN_SCRIPT if source.chance(50) else f"#!/bin/sh\n# {self.one_line(source)}\ntrue\n"
        if roll < 85:
            body["script"] = script
        elif roll < 93:
            key = f"{self.targets.my_inputs}sjapi-{self.canaries.run_id}-{number}/"
            key += source.text(12, "abcXYZ019!_.*'()-").lstrip(".")
            body["scriptS3Key"] = key + "run.sh"
            uploads[key + "run.sh"] = script.encode()
        elif roll < 97:
            body["script"], body["scriptS3Key"] = script, self.targets.my_inputs + "x.sh"
        # else: neither

    def _hostile_script(self, source: Source) -> Any:
        return source.pick(
            [
                "no shebang",
                "",
                "#",
                " #!/bin/sh\n",
                "#!/bin/sh\n\x00touch /tmp/x\n",
                "#!/bin/sh\n" + "#" * (64 * 1024),
                "#!/bin/sh\n\ud800",
                ["#!/bin/sh"],
                0,
                {"text": BENIGN_SCRIPT},
                self.canary(source),
            ]
        )


def corpus(seed: int, count: int, generator: HostileSpecs) -> list[Case]:
    """A fixed corpus: `count` cases from a seeded source (the same seed and targets give the same cases). Every
    other case focuses on one field, in turn, so that each field is attacked as often as the others."""
    source = RandomSource(seed)
    return [generator.case(source, SPEC_FIELDS[n // 2 % len(SPEC_FIELDS)] if n % 2 else None) for n in range(count)]
