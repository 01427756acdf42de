"""image_prune and playbooks/prune.yml, for real: the session registry, real
podman server groups and releases through the router, channels moved in the
registry. Adversarial cases: a version referenced by one thing only (a retained
group, a channel's head or history, being a parent, a rollback target the router
recorded) stays with that reason, while unreferenced old versions go; then the
registry's garbage collection, and the kept versions are still served whole."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

from conftest import (RELEASE, TOP, alive, children, free_port, push_test_image, release_vars, start_release, tags,
                      versions, wait_for)

PRUNE = os.path.join(TOP, "playbooks", "prune.yml")
OLD = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 30 * 86400))
BASE_DIGEST = "org.opencontainers.image.base.digest"
BASE_NAME = "org.opencontainers.image.base.name"
CREATED = "org.opencontainers.image.created"


def repo():
    return "prune%s" % uuid.uuid4().hex[:8]


def old_tiny(registry, name, tag, **labels):
    return push_test_image(registry, name, tag, dict({CREATED: OLD}, **labels))


def runnable(registry, source, name, tag):
    """A new version of the web recipe (its own digest: a label of its own) that podman can run,
    pushed as name:tag and 30 days old; returns its digest."""
    target = "%s/%s:%s" % (registry["address"], name, tag)
    ctx = tempfile.mkdtemp(prefix="prune-build-")
    try:
        with open(os.path.join(ctx, "Containerfile"), "w") as f:
            f.write("FROM %s\n" % source)
        for argv in (["podman", "pull", "-q", "--tls-verify=false", source],
                     ["podman", "build", "-q", "-t", target, "--label", "prune.test=%s" % uuid.uuid4().hex,
                      "--label", "%s=%s" % (CREATED, OLD), ctx],
                     ["podman", "push", "-q", "--tls-verify=false", target]):
            proc = subprocess.run(argv, capture_output=True, text=True, check=False)
            assert proc.returncode == 0, (argv, proc.stderr)
    finally:
        subprocess.run(["rm", "-rf", ctx], check=False)
    subprocess.run(["podman", "untag", target], capture_output=True, check=False)
    return digest(registry, name, tag)


def digest(registry, name, ref):
    sep = "@" if ref.startswith("sha256:") else ":"
    proc = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}",
                           "docker://%s/%s%s%s" % (registry["address"], name, sep, ref)], capture_output=True, text=True,
                          check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def served_whole(registry, name, ref):
    """True when the registry serves the manifest, config and every layer (a skopeo copy to a directory)."""
    out = tempfile.mkdtemp(prefix="prune-copy-")
    try:
        proc = subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", "docker://%s/%s@%s"
                               % (registry["address"], name, ref), "dir:" + out], capture_output=True, text=True,
                              check=False)
        return proc.returncode == 0
    finally:
        subprocess.run(["rm", "-rf", out], check=False)


def move_channel(env, registry, name, channel, digest_):
    """Move a channel with the lifecycle API (in the test's environment: its lock lives in the temporary state)."""
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from ansible_collections.immutable.infra.plugins.module_utils._lifecycle import Lifecycle\n"
            "Lifecycle(%r).move_channel(%r, %r, %r, 'prune-test', reason='test')\n"
            % (os.path.join(TOP, ".cache", "collections"), registry["address"], name, channel, digest_))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def prune_vars(registry, repos, **kw):
    v = {"catalog_registry": registry["address"], "prune_repositories": repos, "prune_keep": 0, "prune_min_age": 0,
         "prune_registry_state_dir": registry["state_dir"]}
    v.update(kw)
    return v


def ran(run, name):
    """The results of a task that ran (not skipped)."""
    return [r for r in run.results(name) if not r.get("skipped")]


def outcome(run, name="Prune image versions"):
    res = run.result(name)
    return {(v["repository"], v["version"]): v for v in res["versions"]}, res


def test_nothing_in_use_is_deleted(ansible, registry, release_images, apps, env):
    r, child = repo(), repo()
    app_group, app_router, port = apps("prg"), apps("prr"), free_port()
    d = {"unused": old_tiny(registry, r, "1"),
         "grandparent": old_tiny(registry, r, "2")}
    d["parent"] = old_tiny(registry, r, "3", **{BASE_DIGEST: d["grandparent"], BASE_NAME: "%s/%s:2" % (registry["address"], r)})
    d["history_old"] = old_tiny(registry, r, "4")      # beyond history_keep: goes
    d["history"] = old_tiny(registry, r, "5")
    d["head"] = old_tiny(registry, r, "6")
    d["unused2"] = old_tiny(registry, r, "7")
    source = release_images["ok1"]["reference"]
    d["group"] = runnable(registry, source, r, "8")
    d["rollback"] = runnable(registry, source, r, "9")
    d["live"] = runnable(registry, source, r, "10")
    d["child"] = old_tiny(registry, child, "1", **{BASE_DIGEST: d["parent"], BASE_NAME: "%s/%s:3" % (registry["address"], r)})
    for target in ("history_old", "history", "head"):
        move_channel(env, registry, r, "dev", d[target])
    move_channel(env, registry, child, "prod", d["child"])
    version = {key: str(n) for n, key in enumerate(
        ["unused", "grandparent", "parent", "history_old", "history", "head", "unused2", "group", "rollback", "live"], 1)}

    # A group running version 8, out of traffic (no router entry): a retained group only.
    rc, res = ansible.task("immutable.infra.server_group", {
        "app": app_group, "stack": "prod", "image": "%s:8" % r, "count": 1, "registry": registry["address"],
        "health_check": {"path": "/healthz", "interval": 0.2, "healthy_threshold": 1}})
    assert rc == 0, res
    # Version 9 released, then replaced highlander-style by 10: its group is gone, the router recorded it.
    assert ansible.playbook(RELEASE, release_vars(registry, app_router, "%s:9" % r, port)).rc == 0
    assert ansible.playbook(RELEASE, release_vars(registry, app_router, "%s:10" % r, release_highlander=True)).rc == 0
    before = {n: tags(registry, n) for n in (r, child)}

    # The playbook defaults to check mode: the plan, and nothing deleted.
    run = ansible.playbook(PRUNE, prune_vars(registry, [r, child], prune_history_keep=2))
    assert run.rc == 0, run.stderr
    plan, res = outcome(run)
    assert "CHECK MODE" in run.result("Say that this run only shows the plan")["msg"]
    assert {k[1] for k, v in plan.items() if v["action"] == "would_delete" and k[0] == r} == {"1", "4", "7"}
    assert {n: tags(registry, n) for n in (r, child)} == before
    assert not ran(run, "Collect garbage in the project's registry")

    def reasons(key):
        return " | ".join(plan[(r, version[key])]["reasons"])

    assert reasons("group") == "server group %s-prod-v001 on podman (1 instance(s): running)" % app_group
    assert reasons("head") == "channel dev of %s (head)" % r
    assert reasons("history") == "channel dev of %s (history move #2)" % r
    assert reasons("parent") == "parent of %s:1" % child
    assert reasons("grandparent") == "parent of %s:3" % r
    assert reasons("rollback") == "router history of %s/prod (rollback target %s-prod-v001)" % (app_router, app_router)
    assert "server group %s-prod-v002 on podman" % app_router in reasons("live")
    assert plan[(child, "1")]["reasons"] == ["channel prod of %s (head)" % child]

    # Applied: exactly the unreferenced versions go, then the registry's garbage collection.
    run = ansible.playbook(PRUNE, prune_vars(registry, [r, child], prune_history_keep=2, prune_apply=True))
    assert run.rc == 0, run.stderr
    done, res = outcome(run)
    assert sorted(res["deleted"]) == sorted("%s/%s@%s" % (registry["address"], r, d[k])
                                            for k in ("unused", "history_old", "unused2"))
    gc = run.result("Collect garbage in the project's registry")
    assert gc["owned"] and gc["changed"] and gc["rc"] == 0, gc
    assert gc["freed_blobs"] >= 6 and gc["freed_bytes"] > 0, gc      # a layer and a config each
    assert gc["blobs_after"] == gc["blobs_before"] - gc["freed_blobs"]
    assert "freed %d blob(s)" % gc["freed_blobs"] in run.result("Report what the garbage collection freed")["msg"]
    assert gc["pid"] and gc["pid"] == int(open(os.path.join(registry["state_dir"], "registry.pid")).read())
    assert tags(registry, r) == sorted(set(before[r]) - {"1", "4", "7"})
    for key in ("unused", "history_old", "unused2"):
        assert digest(registry, r, d[key]) is None, key
    for key in version:
        if key not in ("unused", "history_old", "unused2"):
            assert served_whole(registry, r, d[key]), key
    assert served_whole(registry, child, d["child"])

    # A second run changes nothing.
    run = ansible.playbook(PRUNE, prune_vars(registry, [r, child], prune_history_keep=2, prune_apply=True))
    assert run.rc == 0 and run.changed == 0, run.stderr
    assert outcome(run)[1]["deleted"] == [] and not ran(run, "Collect garbage in the project's registry")


def test_keep_n_and_min_age(ansible, registry):
    r = repo()
    for n in range(1, 7):
        old_tiny(registry, r, str(n))
    for n in (7, 8):
        push_test_image(registry, r, str(n))            # created now
    rc, res = ansible.task("immutable.infra.image_prune", {
        "registry": registry["address"], "repositories": [r], "keep": 3, "min_age": "2d"}, check=True)
    assert rc == 0, res
    going = [v["version"] for v in res["versions"] if v["action"] == "would_delete"]
    assert going == ["1", "2", "3", "4", "5"]
    by = {v["version"]: v["reasons"] for v in res["versions"]}
    assert by["6"] == ["keep-N: one of the 3 newest versions of %s" % r]
    assert by["7"][0] == by["6"][0] and by["7"][1].startswith("age: ") and "younger than min_age 2d" in by["7"][1]
    assert len(tags(registry, r)) == 8
    # min_age in seconds: 40 days keeps every one of them.
    rc, res = ansible.task("immutable.infra.image_prune", {
        "registry": registry["address"], "repositories": [r], "keep": 0, "min_age": 40 * 86400})
    assert rc == 0 and not res["changed"] and res["deleted"] == [], res
    rc, res = ansible.task("immutable.infra.image_prune", {
        "registry": registry["address"], "repositories": [r], "keep": 3, "min_age": "2d"})
    assert rc == 0 and res["changed"] and len(res["deleted"]) == 5, res
    assert versions(registry, r) == ["6", "7", "8"]


def test_refusals_change_nothing(ansible, registry):
    r = repo()
    old_tiny(registry, r, "1")
    old_tiny(registry, r, "2")
    nowhere = "127.0.0.1:%d" % free_port()
    rc, res = ansible.task("immutable.infra.image_prune", {"registry": nowhere, "keep": 0, "min_age": 0})
    assert rc != 0 and "image registry %s is not reachable" % nowhere in res["msg"], res
    # A platform that cannot be read: nothing is deleted.
    rc, res = ansible.task("immutable.infra.image_prune", {
        "registry": registry["address"], "repositories": [r], "keep": 0, "min_age": 0,
        "platform_options": {"podman": {"podman": "/nonexistent/podman"}}})
    assert rc != 0 and "cannot read the server groups on platform podman" in res["msg"], res
    rc, res = ansible.task("immutable.infra.image_prune", {
        "registry": registry["address"], "repositories": [r, "no-such-repo"], "keep": 0, "min_age": 0})
    assert rc != 0 and "unknown repository no-such-repo" in res["msg"], res
    rc, res = ansible.task("immutable.infra.image_prune", {
        "registry": registry["address"], "repositories": [r], "keep": 0, "min_age": "7 days"})
    assert rc != 0 and "min_age '7 days' is not a duration" in res["msg"], res
    assert versions(registry, r) == ["1", "2"]


def test_a_registry_the_project_does_not_own_is_not_collected(ansible, registry, workdir):
    r = repo()
    old_tiny(registry, r, "1")
    other = os.path.join(workdir, "not-ours")
    run = ansible.playbook(PRUNE, prune_vars(registry, [r], prune_apply=True, prune_registry_state_dir=other))
    assert run.rc == 0, run.stderr
    assert outcome(run)[1]["deleted"] and tags(registry, r) == []
    msg = run.result("Say that garbage collection is left to the registry's owner")["msg"]
    assert "is not the project's own registry (no docker-registry is running from %s/registry.pid)" % other in msg
    gc = run.result("Collect garbage in the project's registry")
    assert gc["owned"] is False and not gc["changed"] and "rc" not in gc, gc
    assert not ran(run, "Report what the garbage collection freed")
    # A live docker-registry pid, but a configuration listening elsewhere: not ours either.
    elsewhere = os.path.join(workdir, "elsewhere-%s" % r)
    os.makedirs(elsewhere)
    shutil.copy(os.path.join(registry["state_dir"], "registry.pid"), elsewhere)
    with open(os.path.join(elsewhere, "config.yml"), "w") as f:
        f.write("version: 0.1\nhttp:\n  addr: 127.0.0.1:1\n")
    pid = registry_pid(registry)
    rc, res = ansible.task("immutable.infra.registry_gc", {"registry": registry["address"], "state_dir": elsewhere})
    assert rc == 0 and res["owned"] is False and not res["changed"], res
    assert res["reason"] == "%s/config.yml listens on 127.0.0.1:1, not on %s" % (elsewhere, registry["address"])
    assert registry_pid(registry) == pid and answers(registry)                 # still running, untouched


def registry_pid(registry):
    try:
        with open(os.path.join(registry["state_dir"], "registry.pid")) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def answers(registry):
    try:
        with urllib.request.urlopen("http://%s/v2/" % registry["address"], timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


def test_check_mode_reports_and_stops_nothing(ansible, registry):
    old_tiny(registry, repo(), "1")
    pid = registry_pid(registry)
    rc, res = ansible.task("immutable.infra.registry_gc", {
        "registry": registry["address"], "state_dir": registry["state_dir"]}, check=True)
    assert rc == 0 and res["owned"] is True and not res["changed"], res
    assert res["pid"] == pid and res["blobs_before"] >= 2 and res["bytes_before"] > 0 and res["freed_blobs"] == 0
    assert "rc" not in res and registry_pid(registry) == pid and answers(registry)


def collecting(registry, pid):
    """True once the module's worker stopped the registry (its pid file gone or holding another pid)."""
    return registry_pid(registry) != pid or not alive(pid)


def test_killing_ansible_playbook_while_collecting_leaves_the_registry_running(registry, env, workdir):
    """SIGKILL the main ansible-playbook process (its pid only; the workers call setsid) right after the
    registry was stopped for the collection: the module's worker collects, starts the registry again and
    waits until it answers; the kept version is served whole, the deleted ones are gone."""
    for attempt in range(5):
        r = repo()
        going = [old_tiny(registry, r, str(n)) for n in (1, 2, 3)]
        kept = old_tiny(registry, r, "4")                  # the newest: keep-1
        pid = registry_pid(registry)
        proc = start_release(env, prune_vars(registry, [r], prune_keep=1, prune_apply=True), workdir, playbook=PRUNE)
        workers, caught = [], False
        try:
            deadline = time.monotonic() + 300
            while proc.poll() is None and time.monotonic() < deadline:
                workers = children(proc.pid) or workers
                if collecting(registry, pid):
                    caught = not answers(registry)
                    break
                time.sleep(0.002)
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)          # the main process only, by its pid
            proc.wait()
            proc.stdout.close()
        for w in workers:                                   # the worker finishes the collection, then exits
            wait_for(lambda w=w: not alive(w), 120, "the orphaned worker %d to finish" % w)
        wait_for(lambda: answers(registry), 60, "the registry to answer again")
        assert registry_pid(registry) not in (None, pid) and alive(registry_pid(registry))
        wait_for(lambda: versions(registry, r) == ["4"], 30, "the prune's deletions")
        assert served_whole(registry, r, kept)
        assert all(digest(registry, r, d_) is None for d_ in going)
        if caught:
            return
    raise AssertionError("the kill never landed while the registry was stopped (5 attempts)")
