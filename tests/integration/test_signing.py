"""Signing at bake and verification at deploy, for real: two throwaway GPG keys
(A with a passphrase, B without), runnable versions built from the session's base
image and pushed to the session registry, signatures made by image_sign (skopeo
standalone-sign) into the default lookaside, and server_group deploys under a
signature policy. Trusted A is accepted and runs; B-only, unsigned, tampered, a
signature copied from another version or another repository are refused, naming
the image, the digest and why, and nothing is created. The key and passphrase
never show in results or in ansible-playbook -vvv output. The same signatures
pass podman's ecosystem check (skopeo copy under a signedBy policy.json)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid

import pytest

from conftest import TOP, push_test_image

PASSPHRASE = "pass-%s" % uuid.uuid4().hex


def gpg(home, *args, **kw):
    return subprocess.run(["gpg", "--homedir", home, "--batch", "--no-tty"] + list(args), capture_output=True,
                          check=True, timeout=120, **kw).stdout


@pytest.fixture(scope="module")
def keys(workdir):
    """Keys A (ed25519, with a passphrase) and B (ed25519, none): {a_sec, a_pub, b_sec, b_pub: files,
    a_fpr, b_fpr, a_sec_text, b_pub_text}; made in a throwaway GNUPGHOME whose agent is stopped after."""
    home = tempfile.mkdtemp(prefix="gpg-", dir=workdir)
    out = {}
    try:
        for who, phrase in (("a", PASSPHRASE), ("b", "")):
            gpg(home, "--pinentry-mode", "loopback", "--passphrase", phrase, "--quick-gen-key",
                "Signer %s <%s@example.test>" % (who.upper(), who), "ed25519", "sign", "never")
            listing = gpg(home, "--with-colons", "--list-secret-keys", "%s@example.test" % who, text=True)
            out[who + "_fpr"] = [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")][0]
            for kind, flag in (("sec", "--export-secret-keys"), ("pub", "--export")):
                data = gpg(home, "--pinentry-mode", "loopback", "--passphrase", phrase, "--armor", flag, out[who + "_fpr"])
                out["%s_%s" % (who, kind)] = os.path.join(workdir, "key-%s-%s.asc" % (who, kind))
                with open(out["%s_%s" % (who, kind)], "wb") as f:
                    f.write(data)
                out["%s_%s_text" % (who, kind)] = data.decode()
    finally:
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)
    return out


def runnable_image(registry, base, name, tag):
    """A version that serves HTTP 200 on 8080 (python's http.server on the base image); returns its digest."""
    ref = "%s/%s:%s" % (registry["address"], name, tag)
    with tempfile.TemporaryDirectory() as ctx:
        steps = ["FROM " + base["image"]["reference"], "LABEL org.opencontainers.image.version=%s" % tag,
                 "LABEL infra.immutable.test-image=" + uuid.uuid4().hex, "STOPSIGNAL SIGKILL", "EXPOSE 8080",
                 "WORKDIR /tmp", 'CMD ["python3", "-m", "http.server", "8080"]']
        with open(os.path.join(ctx, "Containerfile"), "w") as f:
            f.write("\n".join(steps) + "\n")
        digest_file = os.path.join(ctx, "digest")
        try:
            subprocess.run(["podman", "build", "-q", "--tls-verify=false", "-t", ref, ctx], check=True,
                           capture_output=True, timeout=300)
            subprocess.run(["podman", "push", "-q", "--tls-verify=false", "--digestfile", digest_file, ref],
                           check=True, capture_output=True, timeout=300)
        finally:
            subprocess.run(["podman", "rmi", "-f", ref], capture_output=True, check=False)
        with open(digest_file) as f:
            return f.read().strip()


def sigdir(env, name, digest):
    return os.path.join(env["IMMUTABLE_INFRA_STATE_DIR"], "sigstore", "%s@sha256=%s" % (name, digest.split(":", 1)[1]))


def sign(ansible, registry, name, version, signing, check=False):
    args = {"name": name, "version": version, "registry": registry["address"], "signing": signing}
    return ansible.task("immutable.infra.image_sign", args, check=check)


def deploy(ansible, registry, app, image, keys_, **kw):
    args = {"app": app, "stack": "prod", "image": image, "registry": registry["address"], "count": 1, "port": 8080,
            "health_check": {"path": "/", "interval": 0.2}, "wait_timeout": 60,
            "signature_policy": dict({"keys": keys_}, **kw)}
    return ansible.task("immutable.infra.server_group", args)


def instances(app, running=False):
    """The names of the app's instances (all, or only the running ones)."""
    proc = subprocess.run(["podman", "ps", "--format", "{{.Names}}", "--filter", "label=infra.immutable.app=%s" % app]
                          + (["--filter", "status=running"] if running else ["-a"]),
                          capture_output=True, text=True, check=True)
    return proc.stdout.split()


@pytest.fixture(scope="module")
def versions(ansible, registry, base, keys, env):
    """repo (unique) with 1 (runnable, signed by A), 2 (runnable, unsigned), 3 (signed by A, then tampered),
    4 (unsigned, then given version 1's signature); `other`: the same manifest as 1 in another repository,
    given 1's signature. Returns names, digests and the sign results."""
    repo, other = "signed%s" % uuid.uuid4().hex[:6], "copied%s" % uuid.uuid4().hex[:6]
    out = {"repo": repo, "other": other}
    out["d1"] = runnable_image(registry, base, repo, "1")
    out["d2"] = runnable_image(registry, base, repo, "2")
    out["d3"] = push_test_image(registry, repo, "3")
    out["d4"] = push_test_image(registry, repo, "4")
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--preserve-digests",
                    "docker://%s/%s@%s" % (registry["address"], repo, out["d1"]),
                    "docker://%s/%s:1" % (registry["address"], other)], check=True, capture_output=True, timeout=120)
    signing = {"key_file": keys["a_sec"], "passphrase": PASSPHRASE}
    for version in ("1", "3"):
        rc, res = sign(ansible, registry, repo, version, signing)
        assert rc == 0 and res["changed"], res
        out["sign%s" % version] = res
    tampered = os.path.join(sigdir(env, repo, out["d3"]), "signature-1")
    with open(tampered, "r+b") as f:
        data = bytearray(f.read())
        data[len(data) // 2] ^= 0xFF
        f.seek(0)
        f.write(data)
    for name, digest in ((repo, out["d4"]), (other, out["d1"])):
        os.makedirs(sigdir(env, name, digest))
        shutil.copy(os.path.join(sigdir(env, repo, out["d1"]), "signature-1"), sigdir(env, name, digest))
    return out


def test_image_sign_signs_into_the_lookaside_once_and_verifies(ansible, registry, keys, versions, env):
    repo, d1 = versions["repo"], versions["d1"]
    first = versions["sign1"]["signature"]
    assert first["fingerprint"] == keys["a_fpr"] and first["identity"] == "%s/%s:1" % (registry["address"], repo)
    assert first["path"] == os.path.join(sigdir(env, repo, d1), "signature-1") and first["digest"] == d1
    # The same key again: nothing to do; check mode of a new signature writes nothing.
    rc, again = sign(ansible, registry, repo, "1", {"key": keys["a_sec_text"], "passphrase": PASSPHRASE})
    assert rc == 0 and not again["changed"] and again["signature"]["path"] == first["path"], again
    rc, planned = sign(ansible, registry, repo, "2", {"key_file": keys["b_sec"]}, check=True)
    assert rc == 0 and planned["changed"] and planned["signature"]["fingerprint"] == keys["b_fpr"]
    assert not os.path.exists(sigdir(env, repo, versions["d2"]))
    verify = {"name": repo, "version": "1", "registry": registry["address"], "state": "verified"}
    rc, res = ansible.task("immutable.infra.image_sign", dict(verify, signature_policy={"keys": [keys["a_pub"]]}))
    assert rc == 0 and not res["changed"] and res["signature"]["verified"] and res["signature"]["fingerprint"] == keys["a_fpr"]
    rc, res = ansible.task("immutable.infra.image_sign", dict(verify, signature_policy={"keys": [keys["b_pub"]]}))
    assert rc != 0 and "which the policy does not trust" in res["msg"], res
    # A wrong passphrase fails without saying it.
    rc, res = sign(ansible, registry, repo, "2", {"key_file": keys["a_sec"], "passphrase": "wrong-" + PASSPHRASE})
    assert rc != 0 and "Bad passphrase" in res["msg"] and PASSPHRASE not in json.dumps(res), res
    assert not os.path.exists(sigdir(env, repo, versions["d2"]))


def test_the_key_and_passphrase_never_show_in_results_or_the_vvv_log(ansible, registry, keys, versions, workdir):
    secret_line = [line for line in keys["a_sec_text"].splitlines() if len(line) > 40][3]
    play = [{"name": "Sign", "hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "Sign with the key given as text", "register": "signed", "immutable.infra.image_sign": {
            "name": versions["repo"], "version": "4", "registry": registry["address"],
            "lookaside": os.path.join(workdir, "lookaside-vvv"),
            "signing": {"key": keys["a_sec_text"], "passphrase": PASSPHRASE}}},
        {"name": "Show the result", "ansible.builtin.debug": {"var": "signed"}}]}]
    path = os.path.join(workdir, "sign-vvv.yml")
    with open(path, "w") as f:
        json.dump(play, f)
    proc = subprocess.run(["ansible-playbook", "-vvv", path], env=ansible.env, cwd=TOP, capture_output=True,
                          text=True, timeout=600, check=False)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert keys["a_fpr"] in log and "signature-1" in log          # the run did sign and was logged
    assert PASSPHRASE not in log and secret_line not in log and "PRIVATE KEY BLOCK" not in log


def test_deploy_accepts_a_version_signed_by_a_trusted_key(ansible, registry, keys, versions, apps):
    app = apps("sig")
    rc, res = deploy(ansible, registry, app, "%s:1" % versions["repo"], [keys["a_pub"]])
    assert rc == 0, res
    assert res["signature"]["verified"] and res["signature"]["fingerprint"] == keys["a_fpr"]
    assert res["signature"]["trusted"] == [keys["a_fpr"]] and res["group"]["image_digest"] == versions["d1"]
    assert instances(app, running=True) == instances(app) == [i["name"] for i in res["group"]["instances"]]
    # Armored key text in the policy works the same, with B trusted too; the group is found, unchanged.
    rc, res = deploy(ansible, registry, app, "%s:1" % versions["repo"], [keys["b_pub_text"], keys["a_pub_text"]])
    assert rc == 0 and not res["changed"] and res["signature"]["fingerprint"] == keys["a_fpr"], res


@pytest.mark.parametrize("case", ["wrong key", "unsigned", "tampered", "other digest", "other repository"])
def test_deploy_refuses_and_creates_nothing(ansible, registry, keys, versions, apps, case):
    app, repo, reg = apps("signo"), versions["repo"], registry["address"]
    image, digest, trusted = {
        "wrong key": ("%s:1" % repo, versions["d1"], [keys["b_pub"]]),
        "unsigned": ("%s:2" % repo, versions["d2"], [keys["a_pub"]]),
        "tampered": ("%s:3" % repo, versions["d3"], [keys["a_pub"]]),
        "other digest": ("%s:4" % repo, versions["d4"], [keys["a_pub"]]),
        "other repository": ("%s:1" % versions["other"], versions["d1"], [keys["a_pub"]]),
    }[case]
    rc, res = deploy(ansible, registry, app, image, trusted)
    assert rc != 0, res
    msg = res["msg"]
    assert msg.startswith("cannot start instances of %s/%s@%s: image " % (reg, image.split(":")[0], digest)), msg
    assert msg.endswith("; nothing was created"), msg
    expected = {
        "wrong key": "signature-1: signed by key %s, which the policy does not trust (trusted: %s)"
                     % (keys["a_fpr"], keys["b_fpr"]),
        "unsigned": "is not signed: no signature in",
        "tampered": "signature-1: tampered: the signature does not verify",
        "other digest": "signature-1: signed for digest %s, not this version's %s" % (versions["d1"], versions["d4"]),
        "other repository": "signature-1: signed for %s/%s:1, not for repository %s/%s" % (reg, repo, reg, versions["other"]),
    }[case]
    assert expected in msg, msg
    assert instances(app) == []


def test_the_signatures_pass_the_containers_signedby_policy(registry, keys, versions, env, workdir):
    """skopeo/podman's own policy enforcement reads the same lookaside: a signedBy A policy copies version 1
    and refuses version 2 (unsigned) and a B-only policy."""
    reg, repo = registry["address"], versions["repo"]
    confd = tempfile.mkdtemp(prefix="registries.d-", dir=workdir)
    with open(os.path.join(confd, "immutable.yaml"), "w") as f:
        f.write("docker:\n  %s:\n    lookaside: file://%s\n" % (reg, os.path.join(env["IMMUTABLE_INFRA_STATE_DIR"], "sigstore")))

    def copy(digest, key):
        policy = os.path.join(confd, "policy.json")
        with open(policy, "w") as f:
            json.dump({"default": [{"type": "reject"}], "transports": {"docker": {reg: [
                {"type": "signedBy", "keyType": "GPGKeys", "keyPath": key}]}}}, f)
        dest = tempfile.mkdtemp(prefix="copy-", dir=workdir)
        return subprocess.run(["skopeo", "--policy", policy, "--registries.d", confd, "copy", "--src-tls-verify=false",
                               "docker://%s/%s@%s" % (reg, repo, digest), "dir:" + dest],
                              capture_output=True, text=True, timeout=120, check=False)
    assert copy(versions["d1"], keys["a_pub"]).returncode == 0
    refused = copy(versions["d2"], keys["a_pub"])
    assert refused.returncode != 0 and "signature" in refused.stderr.lower(), refused.stderr
    assert copy(versions["d1"], keys["b_pub"]).returncode != 0


def test_a_version_signed_at_bake_deploys_under_the_policy(ansible, registry, base, keys, apps, env):
    """image_bake's `signing` (key by file, with its passphrase) signs the published version; the web
    recipe's version then deploys trusting A and is refused trusting only B."""
    name = "sigweb%s" % uuid.uuid4().hex[:6]
    rc, res = ansible.task("immutable.infra.image_bake", {
        "recipe": "web", "name": name, "parent": "immutable/base", "registry": registry["address"],
        "variables": {"web_message": "signed"}, "signing": {"key_file": keys["a_sec"], "passphrase": PASSPHRASE}})
    assert rc == 0, res.get("msg")
    image, signature = res["image"], res["signature"]
    assert signature["fingerprint"] == keys["a_fpr"] and signature["digest"] == image["digest"]
    assert signature["path"] == os.path.join(sigdir(env, name, image["digest"]), "signature-1")
    assert PASSPHRASE not in json.dumps(res)
    app = apps("sigbake")
    args = {"app": app, "stack": "prod", "image": image["reference"], "registry": registry["address"], "count": 1,
            "health_check": {"interval": 0.2}}
    rc, res = ansible.task("immutable.infra.server_group", dict(args, signature_policy={"keys": [keys["b_pub"]]}))
    assert rc != 0 and "signed by key %s, which the policy does not trust" % keys["a_fpr"] in res["msg"], res
    assert instances(app) == []
    rc, res = ansible.task("immutable.infra.server_group", dict(args, signature_policy={"keys": [keys["a_pub"]]}))
    assert rc == 0 and res["signature"]["fingerprint"] == keys["a_fpr"], res.get("msg")
    assert instances(app, running=True) == [i["name"] for i in res["group"]["instances"]]


def test_a_policy_that_only_warns_deploys_and_a_bad_key_is_an_error(ansible, registry, keys, versions, apps, workdir):
    app, repo = apps("sigwarn"), versions["repo"]
    rc, res = deploy(ansible, registry, app, "%s:2" % repo, [keys["a_pub"]], require=False)
    assert rc == 0 and not res["signature"]["verified"], res
    assert any("signature policy not enforced (require: false)" in w and "is not signed" in w for w in res["warnings"])
    assert instances(app, running=True) == [i["name"] for i in res["group"]["instances"]]
    not_a_key = os.path.join(workdir, "not-a-key.pub")
    with open(not_a_key, "w") as f:
        f.write("hello\n")
    other = apps("sigbad")
    rc, res = deploy(ansible, registry, other, "%s:1" % repo, [not_a_key])
    assert rc != 0 and "cannot import the trusted key %s: gpg found no OpenPGP key in it" % not_a_key in res["msg"], res
    assert instances(other) == []
