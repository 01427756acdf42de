# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one subprocess runner every CLI wrapper shares: argv lists only."""

from __future__ import annotations

import os
import subprocess


class ImmutableInfraError(Exception):
    """The single error type module_utils raise; modules turn it into fail_json."""

    def __init__(self, msg, cmd=None, rc=None, stdout=None, stderr=None, **details):
        super().__init__(msg)
        self.msg = msg
        self.cmd = cmd
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.details = details

    def result(self):
        """Fields for fail_json: the message plus whatever is known of the command."""
        out = {"msg": self.msg}
        for key in ("cmd", "rc", "stdout", "stderr"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        out.update(self.details)
        return out


def command_env(extra=None):
    """The environment for a child: C.UTF-8 locale so output parses (ansible needs UTF-8), plus extra vars."""
    env = dict(os.environ)
    env["LANG"] = "C.UTF-8"
    env["LC_ALL"] = "C.UTF-8"
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


def run(argv, env=None, cwd=None, check=True, timeout=None, input_data=None, what=None):
    """Run argv (never a shell string); return (rc, stdout, stderr).

    With check=True a non-zero exit raises ImmutableInfraError naming `what`.
    A missing executable raises too, naming the tool.
    """
    if isinstance(argv, str):
        raise TypeError("run() takes an argv list, not a shell string")
    argv = [str(a) for a in argv]
    try:
        proc = subprocess.run(
            argv,
            env=command_env(env),
            cwd=cwd,
            input=input_data,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise ImmutableInfraError(
            "%s is not installed (no %r on PATH)" % (what or argv[0], argv[0]), cmd=argv
        )
    except subprocess.TimeoutExpired as exc:
        raise ImmutableInfraError(
            "%s timed out after %ss" % (what or argv[0], timeout), cmd=argv,
            stdout=exc.stdout or "", stderr=exc.stderr or "",
        )
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise ImmutableInfraError(
            "%s failed (rc=%d): %s" % (what or argv[0], proc.returncode, detail[-1] if detail else "no output"),
            cmd=argv, rc=proc.returncode, stdout=proc.stdout, stderr=proc.stderr,
        )
    return proc.returncode, proc.stdout, proc.stderr
