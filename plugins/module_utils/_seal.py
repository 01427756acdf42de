# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The seal check: what a golden image must not hold, found in its files.

seal_findings(root, allow=()) walks the places such things live in an image
(/etc, /root, /home, /var/lib, /opt, /srv - not the whole of /usr) without
following symlinks, and returns [{"path": "/root/.ssh/id_rsa", "what": "private key"}, ...]
sorted by path, for:
  SSH host keys            /etc/ssh/ssh_host_*
  private keys             PEM / OpenSSH "PRIVATE KEY" blocks in any file read, id_* key files
                           under home directories, anything in /etc/ssl/private
  a machine id             a non-empty /etc/machine-id ("uninitialized" is sealed), a regular
                           non-empty /var/lib/dbus/machine-id (the usual symlink is fine)
  shell histories          non-empty .bash_history, .zsh_history, .python_history, ...
  cloud credentials        .aws/credentials, gcloud credentials, .azure, .docker/config.json with
                           auths, .kube/config, .netrc, .git-credentials, .pgpass, ...
allow lists image paths (a directory allows everything under it).
"""

from __future__ import annotations

import json
import os
import re
import stat

SEAL_DIRS = ("etc", "root", "home", "var/lib", "opt", "srv")
# Package data: maintainer scripts and lists mention key markers but hold no keys.
SKIP_DIRS = ("var/lib/dpkg", "var/lib/apt", "var/lib/ucf", "etc/ssl/certs", "usr")
CONTENT_LIMIT = 64 << 10    # larger files are not read for key blocks (a key is a few KiB)
HISTORIES = frozenset((".bash_history", ".zsh_history", ".sh_history", ".ash_history", ".history", ".python_history",
                       ".mysql_history", ".psql_history", ".sqlite_history", ".node_repl_history", ".rediscli_history",
                       ".lesshst", ".irb_history", ".erl_history"))
KEY_FILE_RE = re.compile(r"^id_(rsa|dsa|ecdsa|ed25519|ecdsa_sk|ed25519_sk|xmss)$")
# A private key block: the marker, optional PEM headers, then base64 (a mere mention of the marker is not a key).
PRIVATE_KEY_RE = re.compile(
    rb"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY-----\r?\n(?:[A-Za-z-]+: [^\n]*\n)*\s*[A-Za-z0-9+/=]{16,}")
# Credentials, by path relative to a home directory.
CREDENTIALS = (
    (".aws/credentials", "cloud credentials (AWS)"),
    (".aws/config", None),   # only with keys in it, see _aws_config
    (".config/gcloud/credentials.db", "cloud credentials (gcloud)"),
    (".config/gcloud/access_tokens.db", "cloud credentials (gcloud)"),
    (".config/gcloud/application_default_credentials.json", "cloud credentials (gcloud)"),
    (".config/gcloud/legacy_credentials", "cloud credentials (gcloud)"),
    (".azure", "cloud credentials (Azure)"),
    (".docker/config.json", None),   # only with auths, see _docker_config
    (".kube/config", "cloud credentials (kubeconfig)"),
    (".netrc", "credentials (.netrc)"),
    (".git-credentials", "credentials (.git-credentials)"),
    (".pgpass", "credentials (.pgpass)"),
    (".my.cnf", None),   # only with a password, see _mysql_config
    (".config/rclone/rclone.conf", "cloud credentials (rclone)"),
    (".s3cfg", "cloud credentials (s3cmd)"),
    (".boto", "cloud credentials (boto)"),
)


def _read(path, limit=CONTENT_LIMIT):
    try:
        with open(path, "rb") as handle:
            return handle.read(limit + 1)
    except OSError:
        return b""


def _docker_config(path):
    try:
        doc = json.loads(_read(path) or b"{}")
    except ValueError:
        return None
    auths = doc.get("auths") if isinstance(doc, dict) else None
    secrets = ("auth", "identitytoken", "password")
    if isinstance(auths, dict) and any(isinstance(v, dict) and any(v.get(k) for k in secrets) for v in auths.values()):
        return "credentials (container registry auths)"
    return None


def _aws_config(path):
    return "cloud credentials (AWS)" if re.search(rb"(?im)^\s*aws_(secret_access_key|session_token)\s*=\s*\S",
                                                  _read(path)) else None


def _mysql_config(path):
    return "credentials (.my.cnf password)" if re.search(rb"(?im)^\s*password\s*=\s*\S", _read(path)) else None


_CHECKERS = {".aws/config": _aws_config, ".docker/config.json": _docker_config, ".my.cnf": _mysql_config}


def _regular_nonempty(path):
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) and st.st_size > 0 else None


def _machine_ids(root):
    found = []
    st = _regular_nonempty(os.path.join(root, "etc/machine-id"))
    if st is not None and _read(os.path.join(root, "etc/machine-id")).strip() not in (b"", b"uninitialized"):
        found.append(("/etc/machine-id", "machine id (non-empty /etc/machine-id)"))
    if _regular_nonempty(os.path.join(root, "var/lib/dbus/machine-id")) is not None:
        found.append(("/var/lib/dbus/machine-id", "machine id (regular non-empty /var/lib/dbus/machine-id)"))
    return found


def _homes(root):
    """Home directories, relative to root: /root, /home/*, and any .ssh's parent found while walking."""
    homes = ["root"]
    home = os.path.join(root, "home")
    if os.path.isdir(home) and not os.path.islink(home):
        homes += ["home/" + n for n in sorted(os.listdir(home)) if os.path.isdir(os.path.join(home, n))]
    return homes


def _credentials(root, homes):
    found = []
    for home in homes:
        for rel, what in CREDENTIALS:
            path = os.path.join(root, home, rel)
            if not os.path.lexists(path):
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                if any(files for _d, _s, files in os.walk(path)):
                    found.append(("/%s/%s" % (home, rel), what))
                continue
            if _regular_nonempty(path) is None:
                continue
            what = what or _CHECKERS[rel](path)
            if what:
                found.append(("/%s/%s" % (home, rel), what))
    return found


def _walk(root):
    """(image path, full path, name, lstat) of the regular files under SEAL_DIRS, skipping package data."""
    for top in SEAL_DIRS:
        base = os.path.join(root, top)
        if not os.path.isdir(base) or os.path.islink(base):
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            rel_dir = os.path.relpath(dirpath, root)
            dirnames[:] = sorted(d for d in dirnames if os.path.join(rel_dir, d) not in SKIP_DIRS)
            for name in filenames:
                full = os.path.join(dirpath, name)
                st = _regular_nonempty(full)
                if st is not None:
                    yield "/" + os.path.join(rel_dir, name), full, name, st


def _file_finding(image_path, full, name, st):
    if image_path.startswith("/etc/ssh/ssh_host_"):
        return "SSH host key"
    if image_path.startswith("/etc/ssl/private/"):
        return "private key (/etc/ssl/private)"
    if name in HISTORIES:
        return "shell history"
    if KEY_FILE_RE.match(name) and image_path.startswith(("/root/", "/home/")):
        return "private key"
    data = _read(full) if st.st_size <= CONTENT_LIMIT else b""
    if b"PRIVATE KEY-----" in data:
        match = PRIVATE_KEY_RE.search(data)
        if match:
            kind = match.group(1).decode().strip()
            return "private key (%s block)" % kind if kind else "private key"
    return None


def _allowed(path, allow):
    return any(path == a or path.startswith(a.rstrip("/") + "/") for a in allow)


def seal_findings(root, allow=()):
    """[{"path", "what"}] of what the image under root must not hold (see the module doc), sorted by path."""
    allow = ["/" + str(a).strip().lstrip("/") for a in allow or () if str(a).strip()]
    found = dict(_machine_ids(root))
    found.update((p, w) for p, w in _credentials(root, _homes(root)) if p not in found)
    for image_path, full, name, st in _walk(root):
        if image_path in found or any(image_path.startswith(p + "/") for p in found):
            continue
        what = _file_finding(image_path, full, name, st)
        if what:
            found[image_path] = what
    return [{"path": p, "what": w} for p, w in sorted(found.items()) if not _allowed(p, allow)]


def describe(findings):
    """'/root/.ssh/id_rsa (private key), /etc/machine-id (machine id ...)'."""
    return ", ".join("%s (%s)" % (f["path"], f["what"]) for f in findings)
