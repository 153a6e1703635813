#!/usr/bin/env python3
"""The head node's push hook: tells the stack at once when a Slurm job starts or ends (python3 stdlib only, 3.7+).

slurmctld runs this program as ``PrologSlurmctld`` (a job is about to start) and ``EpilogSlurmctld`` (a job has
ended), as its SlurmUser, on the head node. It publishes one "Slurm Job State Change" event (source
``slurm-job-api.head-node``) to the stack's event bus; the stack's rule on that bus runs the cluster's status sweep at
once, so a job's end is seen seconds after it happens instead of at the next scheduled sweep. The event is only a
hint: the sweep asks Slurm itself, so a lost, late, repeated or forged event changes nothing but when the sweep runs.

It never holds Slurm up and never fails a job: slurmctld waits for PrologSlurmctld before it starts a job and requeues
the job when PrologSlurmctld fails, so the program forks, the parent exits 0 at once, and the child (in a session of
its own, stdio on /dev/null) sends the event with short timeouts and a few retries. Without its configuration file it
does nothing. Failures go to ``push-hook.log`` beside it (kept under 64 KiB); the scheduled sweep and the safety polls
find the job anyway.

Credentials are the head node's instance role, read from the instance metadata service (IMDSv2); the role needs only
``events:PutEvents`` on the stack's bus (the stack's ``HeadNodePushPolicyArn`` output). The request is signed with
Signature Version 4 (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html).

Install (as root, idempotent; README "Completion pushed from the head node")::

    python3 push_hook.py install --event-bus-name BUS --region REGION --cluster-name NAME [--install-dir DIR]

copies this program to ``DIR/push-hook`` (default /opt/slurm-job-api), writes ``DIR/push-hook.json`` and prints the
two slurm.conf settings to add (``PrologSlurmctld`` and ``EpilogSlurmctld``, through ParallelCluster's
``CustomSlurmSettings``). ``--endpoint-url`` and ``--imds-url`` exist for the local stack (loopback addresses).
"""

import argparse
import datetime
import hashlib
import hmac
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request

HOOK_NAME = "push-hook"
CONFIG_NAME = "push-hook.json"
LOG_NAME = "push-hook.log"
DEFAULT_INSTALL_DIR = "/opt/slurm-job-api"
EVENT_SOURCE = "slurm-job-api.head-node"
DETAIL_TYPE = "Slurm Job State Change"
IMDS_URL = "http://169.254.169.254"
# What slurmctld sets SLURM_SCRIPT_CONTEXT to for each hook, and what the event then says.
HOOK_EVENTS = {"prolog_slurmctld": "STARTING", "epilog_slurmctld": "ENDED"}
# The job's variables slurmctld gives both hooks that the event carries (slurm.conf(5), "Prolog and Epilog Scripts").
JOB_VARIABLES = {
    "slurmJobId": "SLURM_JOB_ID",
    "arrayJobId": "SLURM_ARRAY_JOB_ID",
    "arrayTaskId": "SLURM_ARRAY_TASK_ID",
    "exitCode": "SLURM_JOB_EXIT_CODE2",
}
ATTEMPTS = 3
TIMEOUT_SECONDS = 3
LOG_LIMIT_BYTES = 64 * 1024
_BUS_NAME = re.compile(r"^[A-Za-z0-9._\-/]{1,256}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]$")
_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,59}$")
_LOOPBACK_URL = re.compile(r"^http://127\.0\.0\.1:[0-9]{1,5}$")


class HookConfig:
    """What the installer wrote: where to publish, for which cluster."""

    FIELDS = ("eventBusName", "region", "clusterName", "endpointUrl", "imdsUrl")

    def __init__(self, values):
        unknown = sorted(set(values) - set(self.FIELDS))
        if unknown:
            raise ValueError("unknown configuration fields: %s" % ", ".join(unknown))
        self.event_bus_name = _checked(values.get("eventBusName"), _BUS_NAME, "eventBusName")
        self.region = _checked(values.get("region"), _REGION, "region")
        self.cluster_name = _checked(values.get("clusterName"), _CLUSTER_NAME, "clusterName")
        self.endpoint_url = values.get("endpointUrl") or "https://events.%s.amazonaws.com" % self.region
        self.imds_url = values.get("imdsUrl") or IMDS_URL
        for name, url in (("endpointUrl", values.get("endpointUrl")), ("imdsUrl", values.get("imdsUrl"))):
            if url is not None and not _LOOPBACK_URL.match(url):
                raise ValueError("%s is only for the local stack: http://127.0.0.1:<port>, not %r" % (name, url))

    def to_dict(self):
        values = {"eventBusName": self.event_bus_name, "region": self.region, "clusterName": self.cluster_name}
        if self.endpoint_url != "https://events.%s.amazonaws.com" % self.region:
            values["endpointUrl"] = self.endpoint_url
        if self.imds_url != IMDS_URL:
            values["imdsUrl"] = self.imds_url
        return values


def _checked(value, pattern, name):
    if not isinstance(value, str) or not pattern.match(value):
        raise ValueError("%s is missing or not valid: %r" % (name, value))
    return value


# ----- the event ----------------------------------------------------------------------------------------------------


def hook_event(environment, cluster_name, now):
    """The PutEvents entry for this run of the hook, or None when slurmctld did not run it as one of its hooks."""
    state = HOOK_EVENTS.get(environment.get("SLURM_SCRIPT_CONTEXT", ""))
    job_id = environment.get("SLURM_JOB_ID", "")
    if state is None or not job_id.isdigit():
        return None
    detail = {"clusterName": cluster_name, "state": state, "pushedAt": _iso(now)}
    for field, variable in JOB_VARIABLES.items():
        value = environment.get(variable)
        if value and re.match(r"^[0-9:]{1,32}$", value):
            detail[field] = value
    return {"Source": EVENT_SOURCE, "DetailType": DETAIL_TYPE, "Detail": json.dumps(detail, sort_keys=True)}


def _iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (moment.microsecond // 1000)


# ----- credentials and signing ----------------------------------------------------------------------------------


def _request(url, headers, method="GET", data=None):
    return urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310 - URLs checked by HookConfig


def _read(request, timeout):
    """The body of the answer to ``request``; the URLs are IMDS's, EventBridge's (https) or, locally, loopback."""
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - URLs checked by HookConfig
        return response.read().decode()


def instance_credentials(imds_url, timeout=TIMEOUT_SECONDS):
    """The instance role's credentials from IMDSv2: (access key id, secret access key, session token)."""
    token_headers = {"X-aws-ec2-metadata-token-ttl-seconds": "60"}
    token = _read(_request(imds_url + "/latest/api/token", token_headers, "PUT"), timeout)
    headers = {"X-aws-ec2-metadata-token": token}
    base = imds_url + "/latest/meta-data/iam/security-credentials/"
    role = _read(_request(base, headers), timeout).split("\n")[0].strip()
    if not re.match(r"^[\w+=,.@-]{1,128}$", role):
        raise ValueError("the instance has no role, or an unexpected name: %r" % role)
    values = json.loads(_read(_request(base + role, headers), timeout))
    return values["AccessKeyId"], values["SecretAccessKey"], values.get("Token")


def _hmac(key, text):
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def signed_put_events(config, entries, credentials, now):
    """A urllib request for EventBridge PutEvents, signed with Signature Version 4."""
    access_key, secret_key, session_token = credentials
    body = json.dumps({"Entries": [dict(entry, EventBusName=config.event_bus_name) for entry in entries]}).encode()
    host = config.endpoint_url.split("://", 1)[1].rstrip("/")
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    headers = {
        "content-type": "application/x-amz-json-1.1",
        "host": host,
        "x-amz-date": amz_date,
        "x-amz-target": "AWSEvents.PutEvents",
    }
    if session_token:
        headers["x-amz-security-token"] = session_token
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            "POST",
            "/",
            "",
            "".join("%s:%s\n" % (name, headers[name]) for name in sorted(headers)),
            signed,
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = "%s/%s/events/aws4_request" % (day, config.region)
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + secret_key).encode(), day), config.region), "events"), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
        access_key,
        scope,
        signed,
        signature,
    )
    return _request(config.endpoint_url.rstrip("/") + "/", headers, "POST", body)


def publish(config, entry, *, attempts=ATTEMPTS, sleep=time.sleep):
    """Sends the event; retries a failed attempt (a new signature each time). Raises the last error."""
    last = None
    for attempt in range(attempts):
        if attempt:
            sleep(0.2 * 2**attempt)
        try:
            now = datetime.datetime.now(datetime.timezone.utc)
            request = signed_put_events(config, [entry], instance_credentials(config.imds_url), now)
            answer = json.loads(_read(request, TIMEOUT_SECONDS) or "{}")
            if answer.get("FailedEntryCount"):
                raise RuntimeError("PutEvents refused the event: %s" % json.dumps(answer.get("Entries")))
            return
        except (urllib.error.URLError, OSError, ValueError, KeyError, RuntimeError) as error:
            last = error
    raise last


# ----- running as slurmctld's hook ------------------------------------------------------------------------------


def _log(directory, message):
    path = os.path.join(directory, LOG_NAME)
    try:
        if os.path.exists(path) and os.path.getsize(path) > LOG_LIMIT_BYTES:
            os.replace(path, path + ".1")
        with open(path, "a") as log:
            log.write("%s %s\n" % (_iso(datetime.datetime.now(datetime.timezone.utc)), message))
    except OSError:
        pass


def run_hook(directory, environment):
    """As PrologSlurmctld/EpilogSlurmctld: hand the event to a detached child and return 0 at once."""
    try:
        with open(os.path.join(directory, CONFIG_NAME)) as file:
            config = HookConfig(json.load(file))
    except FileNotFoundError:
        return 0  # not configured: nothing to tell
    except (OSError, ValueError) as error:
        _log(directory, "configuration unreadable: %s" % error)
        return 0
    entry = hook_event(environment, config.cluster_name, datetime.datetime.now(datetime.timezone.utc))
    if entry is None:
        return 0
    if os.fork():
        return 0  # slurmctld's child: done
    try:  # the detached sender
        os.setsid()
        if os.fork():
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        for descriptor in (0, 1, 2):
            os.dup2(devnull, descriptor)
        publish(config, entry)
    except BaseException as error:  # noqa: BLE001 - nothing may escape into slurmctld's world
        _log(directory, "job %s: the event was not sent: %s" % (environment.get("SLURM_JOB_ID"), error))
    os._exit(0)


# ----- installing -----------------------------------------------------------------------------------------------


def _write_if_changed(path, text, mode):
    """Writes atomically when the content or mode differs; True if it wrote."""
    try:
        with open(path) as file:
            if file.read() == text and (os.stat(path).st_mode & 0o7777) == mode:
                return False
    except FileNotFoundError:
        pass
    temporary = path + ".tmp"
    with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "w") as file:
        file.write(text)
    os.chmod(temporary, mode)
    os.replace(temporary, path)
    return True


def installed_text(program_text, python):
    """The hook as installed: this program, started by ``python`` in isolated mode without site packages."""
    return "#!%s -IS\n" % python + program_text.split("\n", 1)[1]


def install(install_dir, config, program_text, python):
    """Installs the hook and its configuration; idempotent. Returns what changed and the slurm.conf settings."""
    os.makedirs(install_dir, mode=0o755, exist_ok=True)
    hook_path = os.path.join(install_dir, HOOK_NAME)
    changed = []
    if _write_if_changed(hook_path, installed_text(program_text, python), 0o755):
        changed.append(hook_path)
    config_text = json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n"
    if _write_if_changed(os.path.join(install_dir, CONFIG_NAME), config_text, 0o644):
        changed.append(os.path.join(install_dir, CONFIG_NAME))
    return {
        "changed": changed,
        "slurmSettings": {"PrologSlurmctld": hook_path, "EpilogSlurmctld": hook_path},
    }


def _install_command(argv):
    parser = argparse.ArgumentParser(prog="push_hook.py install", description="Install the head node's push hook.")
    parser.add_argument("--event-bus-name", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--cluster-name", required=True)
    parser.add_argument("--install-dir", default=DEFAULT_INSTALL_DIR)
    parser.add_argument("--endpoint-url", help="local stack only: http://127.0.0.1:<port>")
    parser.add_argument("--imds-url", help="local stack only: http://127.0.0.1:<port>")
    arguments = parser.parse_args(argv)
    try:
        config = HookConfig(
            {
                "eventBusName": arguments.event_bus_name,
                "region": arguments.region,
                "clusterName": arguments.cluster_name,
                "endpointUrl": arguments.endpoint_url,
                "imdsUrl": arguments.imds_url,
            }
        )
    except ValueError as error:
        parser.error(str(error))
    with open(os.path.abspath(__file__)) as file:
        program_text = file.read()
    result = install(arguments.install_dir, config, program_text, sys.executable)
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def main(argv=None, environment=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "install":
        return _install_command(argv[1:])
    return run_hook(os.path.dirname(os.path.abspath(__file__)), os.environ if environment is None else environment)


if __name__ == "__main__":
    sys.exit(main())
