"""The playbooks through ansible-runner, the engine AWX runs jobs with, the way AWX runs them:
`ansible-runner transmit | ansible-runner worker | ansible-runner process` over AWX's private data
dir (project/, inventory/, env/extravars, env/settings; artifacts/<ident>/ with job_events, status,
rc, stdout), ansible-runner's awx_display callback, extra vars as a survey passes them (text
answers are strings), and a job cancelled as AWX cancels it: SIGINT to the worker, SIGKILL after a
grace period. The app/stack must not stay locked: the next job takes the lock and converges."""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest

from conftest import (DECOMMISSION, TOP, alive, assert_converged, children, free_port, instance_names, read_lease,
                      wait_for)

RUNNER = os.path.join(os.path.dirname(sys.executable), "ansible-runner")
GRACE = 10          # seconds between AWX's SIGINT and its SIGKILL (AWX waits a little, then kills)
SURVEY_HEALTH = {"path": "/healthz", "interval": 0.2, "healthy_threshold": 2, "timeout": 2}


def private_data_dir(workdir, extravars):
    """AWX's private data dir: the project checkout, an inventory, env/ with the job's extra vars and settings."""
    pdd = os.path.join(workdir, "awx-job-%s" % uuid.uuid4().hex[:8])
    shutil.copytree(os.path.join(TOP, "playbooks"), os.path.join(pdd, "project", "playbooks"))
    shutil.copytree(os.path.join(TOP, "awx"), os.path.join(pdd, "project", "awx"))
    os.makedirs(os.path.join(pdd, "inventory"))
    with open(os.path.join(pdd, "inventory", "hosts"), "w") as f:
        f.write("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
    os.makedirs(os.path.join(pdd, "env"))
    with open(os.path.join(pdd, "env", "extravars"), "w") as f:
        json.dump(extravars, f)
    with open(os.path.join(pdd, "env", "settings"), "w") as f:
        # As AWX writes it (the worker's stdout is the event stream: ansible's own output must stay off it).
        json.dump({"idle_timeout": 0, "job_timeout": 1200, "pexpect_timeout": 5}, f)
    return pdd


class Job:
    """One job through transmit | worker | process, each stage a process of its own (pids kept)."""

    def __init__(self, env, workdir, extravars, playbook="playbooks/release.yml"):
        self.pdd = private_data_dir(workdir, extravars)
        self.ident = "job%s" % uuid.uuid4().hex[:6]
        self.worker_dir = self.pdd + "-worker"
        run_env = dict(env, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"))
        self.transmit = subprocess.Popen([RUNNER, "transmit", self.pdd, "-p", playbook, "--ident", self.ident],
                                         env=run_env, stdout=subprocess.PIPE, start_new_session=True)
        self.worker = subprocess.Popen([RUNNER, "worker", "--private-data-dir", self.worker_dir],
                                       env=run_env, stdin=self.transmit.stdout, stdout=subprocess.PIPE,
                                       start_new_session=True)
        self.process = subprocess.Popen([RUNNER, "process", self.pdd, "--ident", self.ident],
                                        env=run_env, stdin=self.worker.stdout, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.transmit.stdout.close()
        self.worker.stdout.close()
        self.pids = [self.transmit.pid, self.worker.pid, self.process.pid]

    def wait(self, timeout=900):
        out = self.process.communicate(timeout=timeout)[0]
        self.worker.wait(timeout=60)
        self.transmit.wait(timeout=60)
        return out

    @property
    def artifacts(self):
        return os.path.join(self.pdd, "artifacts", self.ident)

    def read(self, name):
        with open(os.path.join(self.artifacts, name)) as f:
            return f.read().strip()

    def events(self):
        out = []
        for path in glob.glob(os.path.join(self.artifacts, "job_events", "*.json")):
            with open(path) as f:
                out.append(json.load(f))
        return sorted(out, key=lambda e: e["counter"])

    def stop(self):
        """Kill (by pid) whatever of this job still runs."""
        for pid in self.pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def survey_release(registry, app, image, port=None, **answers):
    """The release job template's extra vars: its extra_vars plus the survey's answers, as AWX passes them
    (text questions give strings)."""
    v = {"catalog_registry": registry["address"], "release_health_check": SURVEY_HEALTH,
         "app": app, "stack": "prod", "image": image, "release_count": "2", "release_verify_seconds": "1",
         "release_highlander": "false", "release_scan_override": ""}
    if port:
        v["release_port"] = str(port)
    v.update(answers)
    return v


def task_results(events, task):
    return [e["event_data"]["res"] for e in events
            if e["event"] in ("runner_on_ok", "runner_on_failed") and e["event_data"].get("task") == task]


@pytest.fixture
def jobs(ansible, registry):
    """Jobs a test starts and the apps it releases: jobs stopped by pid, apps decommissioned at the end."""
    made, released, strays = [], [], []
    yield made, released, strays
    for job in made:
        job.stop()
    for pid in strays:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    for app in released:
        ansible.playbook(DECOMMISSION, {"app": app, "stack": "prod", "decommission_force": True,
                                        "catalog_registry": registry["address"]})


def run_job(jobs, env, workdir, extravars, playbook="playbooks/release.yml"):
    job = Job(env, workdir, extravars, playbook)
    jobs[0].append(job)
    out = job.wait()
    return job, out


def test_release_through_ansible_runner(registry, release_images, apps, env, workdir, jobs):
    app, port = apps(), free_port()
    jobs[1].append(app)
    job, out = run_job(jobs, env, workdir, survey_release(registry, app, "relweb:1", port))
    assert job.read("status") == "successful", out
    assert job.read("rc") == "0"
    assert "PLAY RECAP" in job.read("stdout")
    events = job.events()
    kinds = [e["event"] for e in events]
    assert kinds[0] == "playbook_on_start" and kinds[-1] == "playbook_on_stats", kinds
    assert "runner_on_failed" not in kinds
    assert all(e["runner_ident"] == job.ident for e in events)
    stats = events[-1]["event_data"]
    assert stats["failures"] == {} and stats["changed"].get("localhost", 0) > 0, stats
    group = task_results(events, "Create the new server group (or find the one running this image)")
    assert group and group[0]["group"]["name"] == "%s-prod-v001" % app
    assert len(instance_names(app)) == 2
    assert read_lease(env, app) is None                     # the job dropped its lock


@pytest.mark.parametrize("grace", [GRACE, 0], ids=["sigint", "sigint-then-sigkill-at-once"])
def test_cancelled_release_leaves_no_lock(ansible, registry, release_images, apps, env, workdir, jobs, grace):
    app, port = apps(), free_port()
    jobs[1].append(app)
    first, out = run_job(jobs, env, workdir, survey_release(registry, app, "relweb:1", port))
    assert first.read("status") == "successful", out

    wanted = survey_release(registry, app, "relweb:2", release_verify_seconds="3")
    job = Job(env, workdir, wanted)
    jobs[0].append(job)
    # Cancel while the new group starts: the lock is held and instances of v002 are being made.
    wait_for(lambda: read_lease(env, app) is not None and any(
        n.startswith("%s-prod-v002-" % app) for n in instance_names(app)), 300, "the release to hold the lock")
    playbooks = children(job.worker.pid)
    jobs[2].extend(playbooks + [w for p in playbooks for w in children(p)])
    os.kill(job.worker.pid, signal.SIGINT)                  # AWX's cancel...
    cancelled = time.monotonic()
    deadline = cancelled + grace
    while alive(job.worker.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    killed = alive(job.worker.pid)
    if killed:
        os.kill(job.worker.pid, signal.SIGKILL)             # ...then SIGKILL after the grace period
    out = job.wait(timeout=120)
    ended = time.monotonic() - cancelled
    if not killed:                                          # the worker answered SIGINT: AWX's "canceled"
        assert job.read("status") == "canceled", out
    # Killed before it could answer SIGINT, the worker takes the pty down with it: ansible-playbook gets SIGHUP.
    wait_for(lambda: not [p for p in playbooks if alive(p)], 30, "ansible-playbook to end with its cancelled job")
    lease = read_lease(env, app)
    assert lease is None or lease["owner"]["pid"] in playbooks, lease  # left only by the killed playbook

    started = time.monotonic()
    rerun, out = run_job(jobs, env, workdir, wanted)
    took = time.monotonic() - started
    assert rerun.read("status") == "successful", out
    events = rerun.events()
    take = task_results(events, "Take the release lock of %s/prod" % app)
    assert take and not take[0].get("failed"), take
    if lease is not None:
        assert take[0]["takeover"]["previous"]["token"] == lease["token"], take
    assert_converged(ansible, app, port)
    assert read_lease(env, app) is None
    print("cancel: worker %s %.1fs after SIGINT, lease left %s; next job took over: %s, ran %.1fs" % (
        "needed SIGKILL" if killed else "ended", ended, lease is not None, bool(take[0].get("takeover")), took))


def test_bake_job_hands_image_and_version_to_the_next_workflow_node(registry, release_images, env, workdir, jobs):
    """awx/bake.yml as the workflow's first node: the survey's recipe answers, and set_stats publishes the
    version (here an already baked one: a no-op bake) as the artifacts AWX passes to the next nodes."""
    extravars = {"catalog_registry": registry["address"], "recipe": "web", "recipe_name": "relweb",
                 "bake_only": "container", "bake_force": "false", "recipe_parent_channel": "",
                 "recipe_variables": {"web_message": "r1"}}
    job, out = run_job(jobs, env, workdir, extravars, playbook="awx/bake.yml")
    assert job.read("status") == "successful", out
    stats = job.events()[-1]
    assert stats["event"] == "playbook_on_stats"
    assert stats["event_data"]["artifact_data"] == {"image": "relweb", "version": str(release_images["ok1"]["version"])}
