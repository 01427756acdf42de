"""The router reloads under load without a failed request: explicit reloads,
and the reloads another endpoint coming and going causes. The served app's
servers come back UP with the weights they had."""
from __future__ import annotations

import time

from conftest import (DECOMMISSION, RELEASE, Load, endpoint_version, free_port, live_weights, release_vars,
                      router_command)


def router_worker_pid(env):
    """The pid of the haproxy process answering the admin socket: a reload replaces it."""
    info = router_command(env, "show info") or ""
    return int(next(line.split(":", 1)[1] for line in info.splitlines() if line.startswith("Pid:")))


def test_reloads_under_load_drop_no_request(ansible, registry, release_images, apps, env, workdir):
    app, other, port = apps("reload"), apps("reloadb"), free_port()
    assert ansible.playbook(RELEASE, release_vars(registry, app, "relweb:1", port)).rc == 0
    assert ansible.playbook(RELEASE, release_vars(registry, app, "relweb:2")).rc == 0
    before = live_weights(env, app)
    assert len(before) == 4 and sum(1 for s, w in before.values() if s.startswith("UP") and w > 0) == 2, before
    workers = [router_worker_pid(env)]

    with Load(workdir, "http://127.0.0.1:%d/version" % port) as load:
        for _reload in range(3):
            rc, res = ansible.task("immutable.infra.router", {"state": "reloaded"})
            assert rc == 0 and res["changed"], res
            workers.append(router_worker_pid(env))
            time.sleep(0.5)
        # Another app/stack's endpoint coming and going reloads the router too.
        run = ansible.playbook(RELEASE, release_vars(registry, other, "relweb:3", free_port(), release_count=1))
        assert run.rc == 0, run.stderr
        workers.append(router_worker_pid(env))
        run = ansible.playbook(DECOMMISSION, {"app": other, "stack": "prod", "decommission_force": True})
        assert run.rc == 0, run.stderr
        workers.append(router_worker_pid(env))
        time.sleep(1)

    assert len(set(workers)) == len(workers), "every step reloaded the router: %s" % workers
    report = load.report
    print("router reloads under load: %d reloads, %d requests, %d failed"
          % (len(workers) - 1, report["requests"], report["failed"]))
    assert report["requests"] > 100 and report["failed"] == 0, report
    assert report["versions"] == {"2": report["requests"]}
    assert live_weights(env, app) == before
    assert live_weights(env, other) == {}
    assert endpoint_version(port)["message"] == "r2"
