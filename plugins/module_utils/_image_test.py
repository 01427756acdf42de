# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test an image version: start a throwaway instance of it, run the recipe's
testinfra tests against it with pytest, record the result beside the version
(Lifecycle.record_test) and always remove the instance.

The instance is never one of production's: it belongs to its own app
(`imagetest`) and a stack made for this run, which no release uses, and it is
never added to a router. A version that never gets healthy is recorded failed
(test id HEALTH_TEST_ID). Tests that cannot run (no tests, a collection error,
a timeout, pytest or testinfra missing) are an error and record nothing.

The tests get, besides testinfra's `host` (the instance), the environment
variables IMMUTABLE_TEST_{NAME,VERSION,DIGEST,REFERENCE,INSTANCE,PORT,URL,
PLATFORM,AUTHORIZED_KEY}: URL is where the controller reaches the service port;
AUTHORIZED_KEY is the public key the run itself gave the instance ('' when none).

A container is reached with `podman exec`. A VM image is sealed (no key, no
sshd): its throwaway VM gets an ed25519 key pair made for the run in the run's
private temporary directory (removed afterwards, never logged) through the
create spec's authorized_keys, and port 22 forwarded on 127.0.0.1; pytest
reaches it with testinfra's ssh backend (a temporary ssh_config and
known_hosts). Production instances never get a key.

Stale throwaway instances: a throwaway instance is labelled (LABEL_OWNER) with
its owner, the module's process: host, boot id, pid namespace, pid and process
start time, as release leases identify an owner (_lease). A run killed with
SIGKILL cannot remove its instance, so each run first removes the instances of
its app on the platform whose owner is provably dead on this machine (process
gone or pid reused); never another machine's, never a live run's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET

from ansible_collections.immutable.infra.plugins.module_utils import _lease, _lifecycle, _vm_image
from ansible_collections.immutable.infra.plugins.module_utils._names import LABEL_PREFIX, check_name, group_name
from ansible_collections.immutable.infra.plugins.module_utils._packer import tree_digest
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError, run
from ansible_collections.immutable.infra.plugins.module_utils._server_group import (
    check_format,
    health_spec,
    wait_healthy,
)

TEST_APP = "imagetest"
HEALTH_TEST_ID = "image_test::healthy"
ENV_PREFIX = "IMMUTABLE_TEST_"
DEFAULT_TIMEOUT = 900
# Lines of pytest's output returned (and shown in a failure).
OUTPUT_LINES = 60
_CHECK_PLACEHOLDER = "<instance>"
SSH_PORT = 22
# The owner of a throwaway instance: {host, boot_id, pid_ns, pid, start} as compact JSON.
LABEL_OWNER = LABEL_PREFIX + "owner"
OWNER_KEYS = ("host", "boot_id", "pid_ns", "pid", "start")


# ------------------------------------------------------------------ the tests directory
def tests_dir_of(params):
    """tests_dir, else <recipe_dir>/tests, as an absolute path."""
    given = params.get("tests_dir") or (os.path.join(params["recipe_dir"], "tests") if params.get("recipe_dir") else None)
    if not given:
        raise ImmutableInfraError("give tests_dir or recipe_dir (whose tests/ holds the recipe's testinfra tests)")
    return os.path.abspath(os.path.expanduser(given))


def find_tests(tests_dir):
    """The test files (test_*.py, relative paths) of a tests directory; an error
    naming the directory when it is missing or holds none."""
    if not os.path.isdir(tests_dir):
        raise ImmutableInfraError("tests directory %s does not exist: a recipe keeps its testinfra tests in "
                                  "<recipe>/tests/test_*.py (or give tests_dir)" % tests_dir)
    found = []
    for dirpath, dirnames, filenames in os.walk(tests_dir):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
        found += [os.path.relpath(os.path.join(dirpath, f), tests_dir) for f in sorted(filenames)
                  if f.startswith("test_") and f.endswith(".py")]
    if not found:
        raise ImmutableInfraError("tests directory %s holds no tests (no test_*.py files)" % tests_dir)
    return found


def tests_digest(tests_dir):
    """sha256 over the sorted relative paths and contents of the tests directory."""
    return "sha256:" + tree_digest(tests_dir)


def testinfra_missing(python):
    """Why pytest-testinfra cannot run under `python`, or None."""
    rc, _out, err = run([python, "-c", "import pytest, testinfra"], check=False, timeout=120,
                        what="checking pytest-testinfra")
    if rc == 0:
        return None
    return ("pytest-testinfra is not installed for %s (%s): install it there (pip install pytest-testinfra)"
            % (python, (err.strip().splitlines() or ["import failed"])[-1]))


# ------------------------------------------------------------------ the owner of a throwaway instance
def owner_label(pid=None):
    """The LABEL_OWNER value naming a process (default: this one) as _lease identifies an owner."""
    ident = _lease.identity(pid or os.getpid())
    if ident is None:
        raise ImmutableInfraError("process %s is gone: it cannot own a throwaway instance" % pid)
    return json.dumps({k: ident[k] for k in OWNER_KEYS}, sort_keys=True, separators=(",", ":"))


def instance_owner(instance):
    """The owner an instance's LABEL_OWNER names, or None (not a throwaway instance, or unreadable)."""
    try:
        owner = json.loads((instance.get("labels") or {}).get(LABEL_OWNER) or "null")
    except ValueError:
        return None
    return owner if isinstance(owner, dict) and all(k in owner for k in OWNER_KEYS) else None


def stale(instances, here=None, status=_lease.owner_status):
    """Names of the instances whose owner is provably dead on this machine (gone, or its pid reused)."""
    here = here or _lease.machine()
    found = []
    for inst in instances:
        owner = instance_owner(inst)
        if owner and _lease.same_machine(owner, here) and status(owner) in ("gone", "reused"):
            found.append(inst["name"])
    return sorted(found)


def sweep_stale(platform, app, check_mode=False):
    """Remove (unless check_mode) the app's instances left by dead runs on this machine; their names."""
    found = stale(platform.list_instances(app=app))
    if found and not check_mode:
        platform.destroy_instances(found, 0)
    return found


# ------------------------------------------------------------------ reaching the instance
def host_spec(platform, instance_name, address=None):
    """testinfra's --hosts for an instance of the platform. Tests run as root
    (they inspect the image); the service keeps its own user. A VM is reached
    with SSH at `address` (its forwarded port 22)."""
    if platform.name == "podman":
        return "podman://root@%s" % instance_name
    if platform.image_format == "vm":
        host, port = address or ("127.0.0.1", SSH_PORT)
        return "ssh://root@%s:%s" % (host, port)
    raise ImmutableInfraError("image_test cannot reach instances of platform %s: it reaches containers with podman "
                              "exec and VMs with SSH" % platform.name)


def host_id(platform, instance_name, address=None):
    """What testinfra puts into the test ids for the host (taken out again by parse_junit)."""
    return address[0] if platform.image_format == "vm" and address else instance_name


def ssh_config(workdir, key):
    """An ssh_config for the throwaway VM: the run's key only, its own known_hosts (the
    VM's host key is new on every boot), no prompts, connections shared when the path fits."""
    path = os.path.join(workdir, "ssh_config")
    lines = ["Host *", "User root", "IdentityFile " + key, "IdentitiesOnly yes", "BatchMode yes",
             "StrictHostKeyChecking no", "UserKnownHostsFile " + os.path.join(workdir, "known_hosts"),
             "GlobalKnownHostsFile /dev/null", "PasswordAuthentication no", "LogLevel ERROR"]
    control = os.path.join(workdir, "cm-%C")
    if len(control) + 40 < 100:          # a unix socket path: %C is 40 characters
        lines.append("ControlPath " + control)
    with open(path, "w") as f:
        f.write("\n  ".join(lines) + "\n")
    return path


def _ssh(config, address, *args):
    return ["ssh", "-F", config, "-p", str(address[1])] + list(args) + ["root@" + address[0]]


def wait_ssh(config, address, timeout, what, runner=run):
    """Until `true` runs over SSH (sshd starts once the key is installed); an error naming what after timeout."""
    deadline, last = time.monotonic() + timeout, ""
    while True:
        try:
            rc, _out, err = runner(_ssh(config, address, "-o", "ConnectTimeout=10") + ["true"], check=False,
                                   timeout=60, what="ssh")
        except ImmutableInfraError as exc:
            rc, err = None, exc.msg
        if rc == 0:
            return
        last = (err or "").strip().splitlines()[-1:] or [""]
        if time.monotonic() > deadline:
            raise ImmutableInfraError("%s does not answer SSH on %s:%d within %ss (the run's key was given through "
                                      "fw_cfg; does the image install it and start sshd?): %s"
                                      % (what, address[0], address[1], timeout, last[0]))
        time.sleep(2)


# ------------------------------------------------------------------ pytest


def empty_ini(workdir):
    """<workdir>/pytest.ini, empty (written by run_pytest): settings from above the tests do not apply."""
    return os.path.join(workdir, "pytest.ini")


def pytest_argv(python, tests_dir, workdir, hosts, junit, extra=()):
    """pytest over the tests directory only: its own pytest.ini when it has one (else an
    empty one), no cache, no conftest from above it, junit in xunit1 (file and line);
    extra: testinfra's connection options."""
    ini = os.path.join(tests_dir, "pytest.ini")
    if not os.path.isfile(ini):
        ini = empty_ini(workdir)
    return [python, "-B", "-m", "pytest", tests_dir, "-c", ini, "--rootdir", tests_dir, "--confcutdir", tests_dir,
            "-p", "no:cacheprovider", "--hosts", hosts, "--junitxml", junit, "-o", "junit_family=xunit1",
            "-q", "-rfE", "--color=no"] + list(extra)


def pytest_env(name, facts, instance_name, port, where, platform="", authorized_key=""):
    """What the tests are told: IMMUTABLE_TEST_* (see the module docstring); no bytecode
    is written into the tests directory."""
    url = "http://%s:%d" % ("[%s]" % where[0] if ":" in where[0] else where[0], where[1]) if where else ""
    env = {ENV_PREFIX + k: v for k, v in (
        ("NAME", name), ("VERSION", facts.get("version") or facts.get("tag") or ""), ("DIGEST", facts["digest"]),
        ("REFERENCE", facts["reference"]), ("INSTANCE", instance_name), ("PORT", str(port)), ("URL", url),
        ("PLATFORM", platform), ("AUTHORIZED_KEY", authorized_key))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _case_id(case, instance_name):
    """test_web.py::TestX::test_y (relative to the tests directory), without the throwaway instance's name in it."""
    name = case.get("name", "")
    if instance_name:
        # testinfra's id of the host is <scheme>://<instance>, alone or before the other parameters.
        name = re.sub(r"\[[a-z]+://%s\]$" % re.escape(instance_name), "", name)
        name = re.sub(r"(?<=\[)[a-z]+://%s-" % re.escape(instance_name), "", name)
    path, classname = case.get("file"), case.get("classname", "")
    if path:
        module = path[:-3].replace("/", ".") if path.endswith(".py") else path
        rest = classname[len(module) + 1:] if classname.startswith(module + ".") else ""
        return "::".join([path] + ([rest] if rest else []) + [name])
    return "::".join([p for p in (classname, name) if p])


def parse_junit(text, instance_name=None):
    """pytest's junit XML -> the record's summary {passed, failed, errors, skipped,
    seconds, failures: [test ids]} plus "tests" (how many ran)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ImmutableInfraError("pytest wrote an unreadable junit report: %s" % exc)
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    seconds, failures = 0.0, []
    for suite in suites:
        for key in counts:
            counts[key] += int(suite.get(key) or 0)
        seconds += float(suite.get("time") or 0)
        for case in suite.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failures.append(_case_id(case, instance_name))
    return {"passed": max(0, counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]),
            "failed": counts["failures"], "errors": counts["errors"], "skipped": counts["skipped"],
            "seconds": round(seconds, 3), "failures": failures, "tests": counts["tests"]}


def _tail(text, lines=OUTPUT_LINES):
    return "\n".join((text or "").rstrip().splitlines()[-lines:])


def run_pytest(argv, env, timeout, junit, instance_name, runner=run):
    """Run the tests; (summary, output). pytest exit 0 or 1 with a report is a
    result; anything else (nothing collected, a collection or usage error, a
    timeout) is an error."""
    ini = argv[argv.index("-c") + 1]
    if not os.path.exists(ini):
        with open(ini, "w") as f:
            f.write("[pytest]\n")
    try:
        rc, out, err = runner(argv, env=env, check=False, timeout=timeout, what="the recipe's tests")
    except ImmutableInfraError as exc:
        if "timed out" in exc.msg:
            raise ImmutableInfraError("the recipe's tests did not finish within %ss (give a longer timeout); "
                                      "nothing recorded" % timeout, cmd=argv, stdout=_tail(exc.stdout))
        raise
    output = _tail(out + ("\n" + err if err.strip() else ""))
    if rc not in (0, 1) or not os.path.isfile(junit):
        why = {2: "interrupted (a collection error?)", 3: "an internal error", 4: "a usage error",
               5: "no tests were collected"}.get(rc, "exit code %s" % rc)
        raise ImmutableInfraError("the recipe's tests could not run (pytest: %s); nothing recorded: %s"
                                  % (why, output.splitlines()[-1] if output else "no output"),
                                  cmd=argv, rc=rc, stdout=output)
    with open(junit) as f:
        summary = parse_junit(f.read(), instance_name)
    if rc == 0 and (summary["failed"] or summary["errors"]):
        raise ImmutableInfraError("pytest passed but its report lists failures: %s" % summary["failures"], cmd=argv)
    if rc == 1 and not summary["failures"]:
        raise ImmutableInfraError("pytest failed (rc=1) but its report lists no failing test; nothing recorded: %s"
                                  % (output.splitlines()[-1] if output else "no output"), cmd=argv, rc=rc, stdout=output)
    return summary, output


# ------------------------------------------------------------------ the run
def _refuse_revoked(lifecycle, name, facts):
    revoked = lifecycle.revocation(name, facts["digest"])
    if revoked:
        raise ImmutableInfraError(_lifecycle.revoked_message(name, facts, revoked) + ": a revoked version is not tested",
                                  revocation=revoked)


def _throwaway(platform, app, stack):
    app, stack = check_name("app", app), check_name("stack", stack or "t" + uuid.uuid4().hex[:12])
    existing = platform.list_instances(app=app, stack=stack)
    if existing:
        raise ImmutableInfraError("app %s stack %s already has instances (%s): image_test starts its own throwaway "
                                  "instance and never touches another's; give another stack (or none)"
                                  % (app, stack, ", ".join(i["name"] for i in existing)))
    return app, stack


def remove_throwaway(platform, app, stack, names=(), stop_timeout=0):
    """Remove every instance of the run's app/stack (and the named ones); return their names."""
    found = set(names)
    try:
        found |= {i["name"] for i in platform.list_instances(app=app, stack=stack)}
    except ImmutableInfraError:
        pass
    return platform.destroy_instances(sorted(found), stop_timeout) if found else []


def _health_failure(exc, started):
    return {"passed": 0, "failed": 0, "errors": 1, "skipped": 0, "seconds": round(time.monotonic() - started, 3),
            "failures": [HEALTH_TEST_ID], "tests": 0}, "never healthy: %s" % exc.msg


def run_image_test(params, lifecycle, catalog, platform, check_mode=False, python=None, runner=run):
    """The whole run (see the module docstring); returns the module result."""
    name, python = params["name"], python or sys.executable
    tests_dir = tests_dir_of(params)
    test_files = find_tests(tests_dir)
    digest_of_tests = tests_digest(tests_dir)
    facts = lifecycle.version(name, version=params.get("version"), digest=params.get("digest"))
    _refuse_revoked(lifecycle, name, facts)
    check_format(platform, facts, "%s@%s" % (name, facts["digest"]))
    app, stack = _throwaway(platform, params.get("app") or TEST_APP, params.get("stack"))
    host_spec(platform, "x")                    # refuses a platform it cannot reach, before anything starts
    missing = testinfra_missing(python)
    if missing:
        raise ImmutableInfraError(missing)
    port = params.get("port") or catalog.service_port(facts)[0]
    hc = health_spec(params.get("health_check"), port)
    group = group_name(app, stack, 1)
    by = _lifecycle.actor(params.get("actor"))
    vm = platform.image_format == "vm"
    wait = params.get("wait_timeout") or platform.boot_seconds
    version = {k: facts.get(k) for k in ("version", "tag", "digest", "reference", "repository")}
    result = {"changed": True, "version": version, "test_digest": digest_of_tests, "tests_dir": tests_dir,
              "test_files": test_files, "platform": platform.name, "app": app, "stack": stack, "by": by}
    if check_mode:
        ssh = ("--ssh-config", "<tmp>/ssh_config", "--ssh-identity-file", "<tmp>/id_ed25519") if vm else ()
        hosts = host_spec(platform, group + "-" + _CHECK_PLACEHOLDER, ("127.0.0.1", "<port>"))
        result.update(would_run=pytest_argv(python, tests_dir, "<tmp>", hosts, "<tmp>/junit.xml", ssh),
                      would_sweep=sweep_stale(platform, app, check_mode=True),
                      msg="would start %s-%s of %s:%s, run %d test file(s) from %s against it, record the result and "
                          "remove the instance" % (group, _CHECK_PLACEHOLDER, name, version["tag"] or version["version"],
                                                   len(test_files), tests_dir))
        return result
    result["swept"] = sweep_stale(platform, app)
    spec = {"app": app, "stack": stack, "group": group, "sequence": 1, "image": facts["reference"],
            "image_digest": facts["digest"], "image_version": facts.get("version") or facts.get("tag") or "",
            "zone": "test", "port": port, "extra_ports": sorted(({hc["port"]} | ({SSH_PORT} if vm else set())) - {port}),
            "env": params.get("env") or {}, "stop_timeout": 0, "labels": {LABEL_OWNER: owner_label()}}
    workdir = tempfile.mkdtemp(prefix="immutable-image-test-")
    junit = os.path.join(workdir, "junit.xml")
    started, names, output, key, public, config, address = time.monotonic(), [], "", None, "", None, None
    try:
        if vm:
            key, public = _vm_image.ssh_key(os.path.join(workdir, "id_ed25519"), "immutable-infra-image-test")
            spec["authorized_keys"] = [public]
            config = ssh_config(workdir, key)
        platform.pull(facts["reference"])
        created = platform.create_instances([spec])
        names = [i["name"] for i in created]
        instance = created[0]
        result["instance"] = instance["name"]
        try:
            wait_healthy(platform, created, hc, wait)
        except ImmutableInfraError as exc:
            if not exc.details.get("unhealthy"):
                raise
            summary, output = _health_failure(exc, started)
        else:
            extra = ()
            if vm:
                address = platform.address(instance, SSH_PORT)
                wait_ssh(config, address, wait, "instance %s" % instance["name"], runner)
                extra = ("--ssh-config", config, "--ssh-identity-file", key)
            argv = pytest_argv(python, tests_dir, workdir, host_spec(platform, instance["name"], address), junit, extra)
            result["command"] = argv
            env = pytest_env(name, facts, instance["name"], port, platform.address(instance, port), platform.name, public)
            summary, output = run_pytest(argv, env, params.get("timeout") or DEFAULT_TIMEOUT, junit,
                                         host_id(platform, instance["name"], address), runner)
    finally:
        try:
            if address:     # the shared SSH connection, before its VM goes
                runner(_ssh(config, address, "-O", "exit"), check=False, timeout=30, what="ssh -O exit")
        except ImmutableInfraError:
            pass
        finally:
            try:
                result["removed"] = remove_throwaway(platform, app, stack, names)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
    status = "passed" if not summary["failures"] else "failed"
    summary.pop("tests", None)
    record = lifecycle.record_test(name, facts["digest"], {
        "status": status, "test_digest": digest_of_tests, "summary": summary, "platform": platform.name, "by": by})
    result.update(status=status, passed=status == "passed", summary=summary, failures=summary["failures"],
                  record=record, output=output, duration=round(time.monotonic() - started, 3))
    if status == "failed":
        raise ImmutableInfraError("image version %s:%s failed its tests (recorded): %s"
                                  % (name, version["tag"] or version["version"], ", ".join(summary["failures"])),
                                  **{k: v for k, v in result.items() if k != "msg"})
    result["msg"] = "image version %s:%s passed %d test(s) (recorded)" % (
        name, version["tag"] or version["version"], summary["passed"])
    return result
