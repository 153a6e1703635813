"""``sja``: submit, watch, list, cancel Slurm jobs and fetch their logs and files through the Slurm Job API.

Exit codes: 0 success; 2 a bad command line (one line on stderr says what); 1 an error of the API, the network or
the configuration (one line on stderr). ``submit --wait`` and ``watch`` exit as the job did, as ``sbatch --wait``
does: 0 for COMPLETED, the job's exit code when it failed with one, 128 + the signal when Slurm reports one, and 1 for
any other end that is not COMPLETED (CANCELLED, TIMEOUT, SUBMIT_FAILED, ERROR, ... without an exit code).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

from slurm_job_client._version import __version__
from slurm_job_client.client import Client
from slurm_job_client.display import DownloadProgress, StatusBoard, status_lines, table
from slurm_job_client.errors import SjaError
from slurm_job_client.job_options import SUBMIT_OPTIONS, OptionError, spec_fields

USAGE_ERROR = 2
DESCRIPTION = "Submit, watch, list and cancel Slurm jobs, and fetch their logs and files, through the Slurm Job API."
LIST_COLUMNS = (
    ("jobId", "JOB ID"),
    ("name", "NAME"),
    ("status", "STATUS"),
    ("slurmJobId", "SLURM"),
    ("exitCode", "EXIT"),
    ("createdAt", "CREATED"),
    ("reason", "REASON"),
)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: "sja submit: error: argument --mem: not a memory size: '4X' (...)"."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def checked(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a converter of job_options: its OptionError becomes argparse's usage error."""

    def parse(text: str) -> Any:
        try:
            return convert(text)
        except OptionError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = convert.__name__
    return parse


def job_exit_code(view: Mapping[str, Any]) -> int:
    """The exit code of ``submit --wait`` and ``watch`` for a job's final view (see the module's docstring)."""
    if view.get("status") == "COMPLETED":
        return 0
    code, signal = view.get("exitCode"), view.get("signal")
    if isinstance(code, int) and 0 < code < 256:
        return code
    if isinstance(signal, int) and 0 < signal < 128:
        return 128 + signal
    return 1


def add_connection_options(parser: argparse.ArgumentParser, default: Any) -> None:
    group = parser.add_argument_group("where the API is")
    group.add_argument("--api-url", default=default, help="the API's URL (default: $SJA_API_URL)")
    group.add_argument("--stack-name", default=default, help="read ApiUrl from this CloudFormation stack")
    group.add_argument("--region", default=default, help="the region to sign for (default: from the URL or profile)")
    group.add_argument("--profile", default=default, help="the AWS profile (default: botocore's chain)")


def add_submit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("script", nargs="?", metavar="SCRIPT", help="the batch script (- for stdin)")
    spec = parser.add_argument_group("the job spec (sbatch's options)")
    for option in SUBMIT_OPTIONS:
        arguments: dict[str, Any] = {"dest": option.field, "help": option.help or None, **option.extra}
        if option.kind == "flag":
            arguments.update(action="store_const", const=True)
        elif option.kind == "negatable":
            arguments.update(action=argparse.BooleanOptionalAction)
        else:
            arguments.update(type=checked(option.convert), metavar=option.metavar or option.field.upper())
            if option.kind == "append":
                arguments["action"] = "append"
        spec.add_argument(*option.flags, **arguments)
    parser.add_argument("--idempotency-key", help="the same key returns the same job (default: a new one)")
    parser.add_argument("--wait", action="store_true", help="follow the job and exit with its exit code")
    parser.add_argument("--json", action="store_true", help="print the API's answer as JSON")
    parser.add_argument("--parsable", action="store_true", help="print only the job id")


def build_parser() -> Parser:
    parser = Parser(prog="sja", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"sja {__version__}")
    add_connection_options(parser, None)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        add_connection_options(sub, argparse.SUPPRESS)  # also after the command; the top level's stays otherwise
        return sub

    add_submit_options(command("submit", "submit a batch script"))
    watch = command("watch", "follow a job live until it ends; exit as it did")
    watch.add_argument("job_id", metavar="JOB")
    watch.add_argument("--poll", type=float, default=2.0, help="seconds between two reads (default 2)")
    status = command("status", "a job's status")
    status.add_argument("job_id", metavar="JOB")
    status.add_argument("--json", action="store_true", help="the API's whole view as JSON")
    listing = command("list", "your jobs, newest first")
    listing.add_argument("--status", help="only jobs of this status (e.g. RUNNING)")
    listing.add_argument("--limit", type=checked(positive), default=20, help="at most this many (default 20)")
    listing.add_argument("--json", action="store_true")
    cancel = command("cancel", "cancel jobs")
    cancel.add_argument("job_ids", nargs="+", metavar="JOB")
    logs = command("logs", "a job's stdout (or stderr)")
    logs.add_argument("job_id", metavar="JOB")
    logs.add_argument("--stderr", action="store_true", help="stderr instead of stdout")
    logs.add_argument("--task", type=checked(task_id), help="the array task's log")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new text until the job ends")
    download = command("download", "download every file of a job's output")
    download.add_argument("job_id", metavar="JOB")
    download.add_argument("directory", nargs="?", metavar="DIR", help="where (default: ./<JOB>)")
    return parser


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise OptionError(f"not a whole number of at least 1: {text!r}")
    return int(text)


def task_id(text: str) -> int:
    if not text.isdigit():
        raise OptionError(f"not an array task id: {text!r}")
    return int(text)


def print_json(value: object) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def now() -> datetime:
    return datetime.now(timezone.utc)


def check_submit(args: argparse.Namespace) -> None:
    if (args.script is None) == (args.scriptS3Key is None):
        raise UsageError("give a SCRIPT or --script-s3-key (one of the two)")


def run_submit(client: Client, args: argparse.Namespace) -> int:
    spec = spec_fields(vars(args))
    script = None
    if args.script == "-":
        script = sys.stdin.read()
    elif args.script is not None:
        script = Path(args.script)  # always a path on the command line, whatever its name
    job = client.submit(script, idempotency_key=args.idempotency_key, **spec)
    if args.parsable:
        print(job.job_id)
    elif args.json and not args.wait:
        print_json(job.accepted)
    else:  # with --wait, stdout is kept for the final view (--json)
        print(f"Submitted job {job.job_id}", file=sys.stderr if args.wait else sys.stdout)
    if not args.wait:
        return 0
    board = StatusBoard(sys.stderr, terminal=False)
    view = job.wait(poll=2.0, on_update=board.show)
    if args.json:
        print_json(view)
    return job_exit_code(view)


def run_watch(client: Client, args: argparse.Namespace) -> int:
    board = StatusBoard(sys.stdout)
    return job_exit_code(client.job(args.job_id).wait(poll=args.poll, on_update=board.show))


def run_status(client: Client, args: argparse.Namespace) -> int:
    view = client.job(args.job_id).status()
    if args.json:
        print_json(view)
    else:
        print("\n".join(status_lines(view, now())))
    return 0


def run_list(client: Client, args: argparse.Namespace) -> int:
    jobs = client.jobs(status=args.status, limit=args.limit)
    if args.json:
        print_json(jobs)
    elif jobs:
        print(table(jobs, LIST_COLUMNS))
    return 0


def run_cancel(client: Client, args: argparse.Namespace) -> int:
    failed = 0
    for job_id in args.job_ids:
        try:
            answer = client.job(job_id).cancel()
        except SjaError as error:
            print(f"sja: error: {error}", file=sys.stderr)
            failed += 1
            continue
        sent = "scancel sent" if answer.get("slurmCancelSent") else "it had not reached Slurm yet"
        print(f"cancel requested: {job_id} ({sent})")
    return 1 if failed else 0


def run_logs(client: Client, args: argparse.Namespace) -> int:
    stream = "stderr" if args.stderr else "stdout"
    for text in client.job(args.job_id).logs(stream, follow=args.follow, task=args.task):
        sys.stdout.write(text)
        sys.stdout.flush()
    return 0


def run_download(client: Client, args: argparse.Namespace) -> int:
    directory = args.directory or args.job_id
    for path in client.job(args.job_id).download(directory, progress=DownloadProgress(sys.stderr)):
        print(path)
    return 0


COMMANDS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "submit": run_submit,
    "watch": run_watch,
    "status": run_status,
    "list": run_list,
    "cancel": run_cancel,
    "logs": run_logs,
    "download": run_download,
}


class UsageError(Exception):
    """A command line argparse accepted but that asks for something impossible (exit 2)."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "submit":
            check_submit(args)
        client = Client(
            api_url=getattr(args, "api_url", None),
            stack_name=getattr(args, "stack_name", None),
            region=getattr(args, "region", None),
            profile=getattr(args, "profile", None),
        )
        return COMMANDS[args.command](client, args)
    except UsageError as error:
        print(f"sja {args.command}: error: {error} (see sja {args.command} --help)", file=sys.stderr)
        return USAGE_ERROR
    except SjaError as error:
        print(f"sja: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
