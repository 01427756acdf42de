#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: local_service
short_description: Run a daemon the project owns, known by its pid file
version_added: 0.1.0
description:
  - Starts, stops or restarts a local daemon (the image registry, the traffic router) without an init system.
  - The daemon is identified by its pid file and the executable that pid runs; a recycled pid is not mistaken
    for it. It is stopped by that pid only (C(SIGTERM), then C(SIGKILL)), never by name.
  - Starting a running daemon is a no-op. A start waits until O(health_url) answers.
author:
  - immutable.infra maintainers (@immutable-infra)
extends_documentation_fragment:
  - immutable.infra.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  idempotent:
    support: full
options:
  name:
    description: A name for messages.
    type: str
    required: true
  command:
    description: The daemon's argv. It must stay in the foreground.
    type: list
    elements: str
    required: true
  pidfile:
    description: Where the daemon's pid is kept.
    type: path
    required: true
  log_file:
    description: Where the daemon's output goes.
    type: path
    required: true
  state:
    description: C(started), C(stopped) or C(restarted).
    type: str
    default: started
    choices: [started, stopped, restarted]
  chdir:
    description: Working directory of the daemon.
    type: path
  health_url:
    description: An HTTP URL that answers 2xx or 3xx once the daemon is ready.
    type: str
  health_timeout:
    description: Seconds to wait for O(health_url).
    type: float
    default: 15
  listen:
    description:
      - C(host:port) the daemon listens on. Before a start, a port already taken by another process fails
        the task with a clear message.
    type: str
"""

EXAMPLES = r"""
- name: Start the image registry
  immutable.infra.local_service:
    name: registry
    command: [docker-registry, serve, /var/lib/immutable/registry/config.yml]
    pidfile: /var/lib/immutable/registry/registry.pid
    log_file: /var/lib/immutable/registry/registry.log
    listen: 127.0.0.1:5000
    health_url: http://127.0.0.1:5000/v2/
"""

RETURN = r"""
pid:
  description: The daemon's pid, or null when stopped.
  returned: always
  type: int
  sample: 4242
state:
  description: The state after the task.
  returned: always
  type: str
  sample: started
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.immutable.infra.plugins.module_utils import _service as svc
from ansible_collections.immutable.infra.plugins.module_utils._module import run_module
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            command=dict(type="list", elements="str", required=True),
            pidfile=dict(type="path", required=True),
            log_file=dict(type="path", required=True),
            state=dict(type="str", default="started", choices=["started", "stopped", "restarted"]),
            chdir=dict(type="path"),
            health_url=dict(type="str"),
            health_timeout=dict(type="float", default=15),
            listen=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    p = module.params

    def converge():
        argv, pidfile = p["command"], p["pidfile"]
        pid = svc.status(argv, pidfile)
        before = "started" if pid else "stopped"
        want = "started" if p["state"] in ("started", "restarted") else "stopped"
        changed = p["state"] == "restarted" or before != want
        result = {"changed": changed, "state": want, "pid": pid,
                  "diff": {"before": {"state": before, "pid": pid}, "after": {"state": want}}}
        if not changed or module.check_mode:
            if module.check_mode and changed:
                result["pid"] = None if want == "stopped" else pid
            return result
        if pid:
            svc.stop(pid, argv, pidfile)
        result["pid"] = None
        if want == "started":
            if p["listen"]:
                host, _sep, port = p["listen"].rpartition(":")
                if svc.port_in_use(host or "127.0.0.1", port):
                    raise ImmutableInfraError("cannot start %s: %s is already taken by another process"
                                              % (p["name"], p["listen"]))
            result["pid"] = svc.start(argv, pidfile, p["log_file"], p["chdir"], None, p["health_url"],
                                      p["health_timeout"])
        result["diff"]["after"]["pid"] = result["pid"]
        return result

    run_module(module, converge)


if __name__ == "__main__":
    main()
