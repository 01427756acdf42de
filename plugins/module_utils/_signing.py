# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Image signatures: GPG "simple signing" of a version's manifest digest, kept in
a sigstore-style lookaside directory beside the registry, and the verification
policy a deploy enforces.

The signatures are the containers ecosystem's own ("atomic container
signature": a GPG-signed JSON naming critical.identity.docker-reference and
critical.image.docker-manifest-digest), made and checked by
`skopeo standalone-sign` / `skopeo standalone-verify`, in the lookaside layout
podman and skopeo read (`<lookaside>/<repository>@sha256=<hex>/signature-<n>`):
a registries.d entry pointing at the directory lets podman's own
`signedBy` policy check them too.

Every call uses a throwaway GNUPGHOME (its agent killed and the directory
removed afterwards). Key material and passphrases never reach a process
argument, a result or an error: keys go to gpg on stdin or by file name, the
passphrase through a FIFO skopeo reads once.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading

from ansible_collections.immutable.infra.plugins.module_utils._catalog import parse_reference
from ansible_collections.immutable.infra.plugins.module_utils._module import state_dir
from ansible_collections.immutable.infra.plugins.module_utils._oci import MANIFEST_ACCEPT, RegistryClient, sha256_digest
from ansible_collections.immutable.infra.plugins.module_utils._runner import ImmutableInfraError, run

SIGNATURE_TYPE = "atomic container signature"
ARMOR_PREFIX = "-----BEGIN PGP "
# A project-wide default policy (a JSON file of the signature_policy option),
# enforced by server_group when the task gives none.
POLICY_ENV = "IMMUTABLE_INFRA_SIGNATURE_POLICY"

# Module options, defined once (image_bake and image_sign take `signing`; server_group and image_sign the policy).
SIGNING_OPTIONS = dict(
    key_file=dict(type="path"),
    key=dict(type="str", no_log=True),
    passphrase=dict(type="str", no_log=True),
    fingerprint=dict(type="str"),
)
POLICY_OPTIONS = dict(
    keys=dict(type="list", elements="str", required=True, no_log=False),  # public keys: not secret
    lookaside=dict(type="path"),
    require=dict(type="bool", default=True),
)


def default_lookaside():
    """Where signatures live when no lookaside is given: the project state's sigstore directory."""
    return state_dir("sigstore")


def signature_dir(lookaside, name, digest):
    """The directory of a version's signatures: <lookaside>/<repository>@sha256=<hex> (containers' layout)."""
    algo, _sep, hexpart = str(digest).partition(":")
    if algo != "sha256" or len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise ImmutableInfraError("invalid digest %r: expected sha256:<64 hex digits>" % (digest,))
    parts = str(name).split("/")
    if not name or any(p in ("", ".", "..") for p in parts) or os.path.isabs(str(name)):
        raise ImmutableInfraError("invalid repository name %r for a signature path" % (name,))
    return os.path.join(lookaside or default_lookaside(), "%s@%s=%s" % (name, algo, hexpart))


def signature_paths(lookaside, name, digest):
    """The version's signature files, signature-1, signature-2, ... up to the first missing one."""
    base, out = signature_dir(lookaside, name, digest), []
    while os.path.isfile(os.path.join(base, "signature-%d" % (len(out) + 1))):
        out.append(os.path.join(base, "signature-%d" % (len(out) + 1)))
    return out


def parse_policy(value, environ=None):
    """The verification policy {"keys": [...], "lookaside": path, "require": bool}, or None (no verification).
    `value` is the signature_policy option; when it is None the file named by $IMMUTABLE_INFRA_SIGNATURE_POLICY
    (JSON, same fields) applies. Raises naming the bad field."""
    where = "signature_policy"
    if value is None:
        path = (os.environ if environ is None else environ).get(POLICY_ENV)
        if not path:
            return None
        where = "signature policy file %s ($%s)" % (path, POLICY_ENV)
        try:
            with open(path) as f:
                value = json.load(f)
        except (OSError, ValueError) as exc:
            raise ImmutableInfraError("cannot read the %s: %s" % (where, exc))
    if not isinstance(value, dict):
        raise ImmutableInfraError("bad %s: expected a mapping with keys, lookaside, require (got %s)"
                                  % (where, type(value).__name__))
    unknown = sorted(set(value) - set(POLICY_OPTIONS))
    if unknown:
        raise ImmutableInfraError("bad %s: unknown field(s) %s (known: %s)"
                                  % (where, ", ".join(unknown), ", ".join(sorted(POLICY_OPTIONS))))
    keys = value.get("keys")
    if isinstance(keys, str):
        keys = [keys]
    if not keys or not isinstance(keys, list) or not all(isinstance(k, str) and k.strip() for k in keys):
        raise ImmutableInfraError("bad %s: keys must list the trusted public keys (key files or armored key text), "
                                  "got %r" % (where, _shown(keys)))
    for key in keys:
        if not key.lstrip().startswith(ARMOR_PREFIX) and not os.path.isfile(key):
            raise ImmutableInfraError("bad %s: key %r is neither a readable key file nor armored key text (%s...)"
                                      % (where, _shown(key), ARMOR_PREFIX))
    require = value.get("require", True)
    if not isinstance(require, bool):
        raise ImmutableInfraError("bad %s: require must be true or false (got %r)" % (where, require))
    lookaside = value.get("lookaside") or None
    if lookaside is not None and not isinstance(lookaside, str):
        raise ImmutableInfraError("bad %s: lookaside must be a directory path (got %r)" % (where, lookaside))
    return {"keys": keys, "lookaside": lookaside, "require": require}


def _shown(value):
    """A policy value for an error message: armored text shortened to its first line."""
    if isinstance(value, list):
        return [_shown(v) for v in value]
    if isinstance(value, str) and ARMOR_PREFIX in value:
        return value.strip().splitlines()[0] + " ..."
    return value


def identity_of(facts):
    """The docker reference a version is signed for: <registry>/<name>:<tag> (what `podman push --sign-by` uses)."""
    parts = reference_parts(facts)
    tag = facts.get("tag") or facts.get("version")
    return "%s/%s%s" % (parts["registry"], parts["name"], ":" + str(tag) if tag else "")


def reference_parts(facts):
    ref = facts.get("reference") or "%s@%s" % (facts.get("repository"), facts.get("digest"))
    return parse_reference(ref)


def parse_status(text):
    """What gpg's --status-fd lines say about one signature: {"valid": bool, "fingerprint" (the signing key's),
    "primary" (its primary key's), "problem": None|"bad"|"no_pubkey"|"expired_key"|"revoked_key"|"none"}."""
    out = {"valid": False, "fingerprint": None, "primary": None, "problem": "none"}
    for line in text.splitlines():
        words = line.split()
        if len(words) < 2 or words[0] != "[GNUPG:]":
            continue
        kind, args = words[1], words[2:]
        if kind == "VALIDSIG" and args:
            out.update(valid=True, fingerprint=args[0], primary=args[9] if len(args) > 9 else args[0])
        elif kind == "BADSIG":
            out["problem"] = "bad"
        elif kind == "ERRSIG" and args:
            out["fingerprint"] = out["primary"] = args[6] if len(args) > 6 and args[6] != "-" else args[0]
            out["problem"] = "no_pubkey" if len(args) > 5 and args[5] == "9" else "bad"
        elif kind in ("EXPKEYSIG", "REVKEYSIG"):
            out["problem"] = "expired_key" if kind == "EXPKEYSIG" else "revoked_key"
    if out["valid"] and out["problem"] == "none":
        out["problem"] = None
    return out


class Keyring:
    """A throwaway GNUPGHOME: import keys, sign, verify; close() kills its agent and removes it."""

    def __init__(self):
        self.home = tempfile.mkdtemp(prefix="immutable-gpg-")
        # The agent re-protects an imported key at first use with an S2K count it calibrates first: 4-5 s
        # on a loaded 2-core host, 0.4 s with a fixed count. The copy lives in this 0700 home for one call.
        with open(os.path.join(self.home, "gpg-agent.conf"), "w") as f:
            f.write("s2k-count 65536\n")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if os.path.isdir(self.home):
            run(["gpgconf", "--homedir", self.home, "--kill", "all"], check=False, timeout=30)
            shutil.rmtree(self.home, ignore_errors=True)

    def gpg(self, args, input_data=None, check=True, what="gpg"):
        return run(["gpg", "--homedir", self.home, "--batch", "--no-tty", "--no-auto-key-locate"] + args,
                   input_data=input_data, check=check, timeout=60, what=what)

    def import_key(self, text=None, path=None, what="key"):
        """Import a key (armored text on stdin, or a file); return {"public": [fpr..], "secret": [fpr..]}."""
        args = ["--with-colons", "--import-options", "import-show", "--import"] + ([path] if path else [])
        rc, out, _err = self.gpg(args, input_data=text, check=False, what="gpg --import")
        found, kind = {"public": [], "secret": []}, None
        for line in out.splitlines():
            fields = line.split(":")
            if fields[0] in ("pub", "sec"):
                kind = "secret" if fields[0] == "sec" else "public"
            elif fields[0] == "fpr" and kind and len(fields) > 9:
                found[kind].append(fields[9])
                kind = None
        if rc != 0 or not (found["public"] or found["secret"]):
            raise ImmutableInfraError("cannot import the %s: gpg found no OpenPGP key in it (rc=%d)" % (what, rc))
        return found

    def env(self):
        return {"GNUPGHOME": self.home}


def _manifest(registry, facts, home):
    """The version's manifest bytes as the registry serves them (checked against the digest), saved in home."""
    parts = reference_parts(facts)
    client = registry if isinstance(registry, RegistryClient) and registry.registry == parts["registry"] \
        else RegistryClient(parts["registry"], getattr(registry, "validate_certs", None))
    resp = client.request("GET", "/v2/%s/manifests/%s" % (parts["name"], parts["digest"]),
                          headers={"Accept": MANIFEST_ACCEPT}, key=parts["name"])
    if resp is None:
        raise ImmutableInfraError("unknown image %s@%s: no such manifest in registry %s"
                                  % (parts["name"], parts["digest"], parts["registry"]))
    if sha256_digest(resp.body) != parts["digest"]:
        raise ImmutableInfraError("registry %s served a manifest for %s@%s whose digest is %s"
                                  % (parts["registry"], parts["name"], parts["digest"], sha256_digest(resp.body)))
    path = os.path.join(home, "manifest.json")
    with open(path, "wb") as f:
        f.write(resp.body)
    return path


def check_signature(ring, manifest, path, facts, trusted):
    """One signature file against the version: {"path", "ok", "fingerprint", "identity", "reason"}.
    `trusted` lists the fingerprints the keyring holds on purpose."""
    parts = reference_parts(facts)
    repository = "%s/%s" % (parts["registry"], parts["name"])
    payload = os.path.join(ring.home, "payload.json")
    if os.path.exists(payload):
        os.unlink(payload)
    _rc, status, _err = ring.gpg(["--status-fd", "1", "--output", payload, "--decrypt", path], check=False,
                                 what="gpg --decrypt")
    found = parse_status(status)
    out = {"path": path, "ok": False, "fingerprint": found["primary"], "identity": None, "reason": None}
    if found["problem"] == "no_pubkey":
        out["reason"] = "signed by key %s, which the policy does not trust (trusted: %s)" % (
            found["primary"], ", ".join(trusted))
        return out
    if found["problem"] in ("expired_key", "revoked_key"):
        out["reason"] = "signed by key %s, which is %s" % (found["primary"], found["problem"].split("_", 1)[0])
        return out
    if found["problem"]:
        out["reason"] = "tampered: the signature does not verify (%s)" % (
            "bad signature" if found["problem"] == "bad" else "not a valid OpenPGP signature")
        return out
    try:
        with open(payload, "rb") as f:
            critical = json.loads(f.read().decode("utf-8"))["critical"]
        claimed_digest = critical["image"]["docker-manifest-digest"]
        out["identity"] = identity = critical["identity"]["docker-reference"]
        kind = critical["type"]
    except (OSError, ValueError, KeyError, TypeError):
        out["reason"] = "tampered: the signed content is not an atomic container signature"
        return out
    try:
        claimed = parse_reference(identity)
    except ImmutableInfraError:
        claimed = {"registry": None, "name": identity}
    if kind != SIGNATURE_TYPE:
        out["reason"] = "the signed content is of type %r, not %r" % (kind, SIGNATURE_TYPE)
    elif claimed_digest != parts["digest"]:
        out["reason"] = "signed for digest %s, not this version's %s (a signature of another version)" % (
            claimed_digest, parts["digest"])
    elif "%s/%s" % (claimed["registry"], claimed["name"]) != repository:
        out["reason"] = "signed for %s, not for repository %s" % (identity, repository)
    if out["reason"]:
        return out
    # The ecosystem's own check has the last word: digest, identity, type and key.
    rc, sout, err = run(["skopeo", "standalone-verify", manifest, identity, found["fingerprint"], path],
                        env=ring.env(), check=False, timeout=60, what="skopeo standalone-verify")
    if rc != 0:
        detail = (err or sout).strip().splitlines()
        out["reason"] = "skopeo standalone-verify refused it: %s" % (detail[-1] if detail else "rc=%d" % rc)
        return out
    out["ok"] = True
    return out


def _trust(ring, policy):
    trusted = []
    for key in policy["keys"]:
        armored = key.lstrip().startswith(ARMOR_PREFIX)
        found = ring.import_key(text=key if armored else None, path=None if armored else key,
                                what="trusted key %s" % ("(armored text)" if armored else key))
        trusted.extend(f for f in found["public"] + found["secret"] if f not in trusted)
    return trusted


def verify_version(registry, facts, policy, lookaside=None):
    """Verify a version's signatures against a policy (see parse_policy). Returns {"verified": True,
    "fingerprint", "identity", "path", "digest", "trusted"}; raises ImmutableInfraError naming the image,
    the digest and why (unsigned, tampered, signed for another version or reference, untrusted key)."""
    parts = reference_parts(facts)
    lookaside = lookaside or policy.get("lookaside") or default_lookaside()
    name = "%s/%s@%s" % (parts["registry"], parts["name"], parts["digest"])
    with Keyring() as ring:
        trusted = _trust(ring, policy)      # first: a policy whose keys do not import is an error for every version
        paths = signature_paths(lookaside, parts["name"], parts["digest"])
        if not paths:
            raise ImmutableInfraError(
                "image %s is not signed: no signature in %s (sign it with immutable.infra.image_sign, or bake it "
                "with signing)" % (name, signature_dir(lookaside, parts["name"], parts["digest"])),
                signature={"digest": parts["digest"], "verified": False, "reasons": ["unsigned"], "trusted": trusted})
        manifest = _manifest(registry, facts, ring.home)
        checks = [check_signature(ring, manifest, p, facts, trusted) for p in paths]
    good = [c for c in checks if c["ok"]]
    if not good:
        reasons = ["%s: %s" % (os.path.basename(c["path"]), c["reason"]) for c in checks]
        raise ImmutableInfraError(
            "image %s has no signature the policy accepts: %s" % (name, "; ".join(reasons)),
            signature={"digest": parts["digest"], "verified": False, "reasons": reasons, "trusted": trusted,
                       "signers": sorted({c["fingerprint"] for c in checks if c["fingerprint"]})})
    return {"verified": True, "fingerprint": good[0]["fingerprint"], "identity": good[0]["identity"],
            "path": good[0]["path"], "digest": parts["digest"], "trusted": trusted}


def image_verifier(registry, policy_option, doing="cannot start instances of"):
    """verify(image facts) for server_group, or None when no policy applies (option absent, no policy file).
    With require: false a failed verification is returned as a warning instead of refusing."""
    policy = parse_policy(policy_option)
    if policy is None:
        return None

    def verify(image):
        try:
            return verify_version(registry, image, policy)
        except ImmutableInfraError as exc:
            if policy["require"]:
                raise ImmutableInfraError("%s %s: %s; nothing was created" % (doing, image.get("reference"), exc.msg),
                                          **exc.details)
            return dict(exc.details.get("signature") or {}, verified=False,
                        warning="signature policy not enforced (require: false): %s" % exc.msg)
    return verify


def _passphrase_pipe(home, passphrase):
    """A FIFO that hands the passphrase to one reader, so it never lands on disk or in argv."""
    path = os.path.join(home, "passphrase")
    os.mkfifo(path, 0o600)

    def feed():
        try:
            with open(path, "w") as f:
                f.write(passphrase or "")
        except OSError:
            pass
    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    return path, thread


def _release(path, thread):
    """Unblock the feeder when the reader never came (the signer failed first)."""
    if thread.is_alive():
        try:
            os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
        except OSError:
            pass
        thread.join(5)


def _signing_key(ring, signing):
    if not signing or not (signing.get("key") or signing.get("key_file")):
        raise ImmutableInfraError("signing needs the private key: give signing.key_file or signing.key")
    if signing.get("key") and signing.get("key_file"):
        raise ImmutableInfraError("signing takes one of key_file and key, not both")
    if signing.get("key_file"):
        if not os.path.isfile(signing["key_file"]):
            raise ImmutableInfraError("signing.key_file %s does not exist" % signing["key_file"])
        found = ring.import_key(path=signing["key_file"], what="signing key file %s" % signing["key_file"])
    else:
        found = ring.import_key(text=signing["key"], what="signing key (signing.key)")
    wanted = (signing.get("fingerprint") or "").replace(" ", "").upper()
    if wanted:
        match = [f for f in found["secret"] if f.upper() == wanted or f.upper().endswith(wanted)]
        if not match:
            raise ImmutableInfraError("signing.fingerprint %s is not a secret key of the given key (it holds: %s)"
                                      % (signing["fingerprint"], ", ".join(found["secret"]) or "no secret key"))
        return match[0]
    if len(found["secret"]) != 1:
        raise ImmutableInfraError("the signing key holds %s secret keys (%s): give signing.fingerprint" % (
            len(found["secret"]), ", ".join(found["secret"]) or "none; a public key cannot sign"))
    return found["secret"][0]


def sign_version(registry, facts, signing, lookaside=None, check_mode=False):
    """Sign a version's manifest digest for its docker reference with the given key (signing: key_file or key,
    passphrase, fingerprint) into the lookaside. A version already signed by that key is left alone.
    Returns {"fingerprint", "path", "identity", "digest", "changed"}."""
    parts = reference_parts(facts)
    lookaside = lookaside or default_lookaside()
    identity = identity_of(facts)
    with Keyring() as ring:
        fingerprint = _signing_key(ring, signing)
        manifest = _manifest(registry, facts, ring.home)
        for path in signature_paths(lookaside, parts["name"], parts["digest"]):
            check = check_signature(ring, manifest, path, facts, [fingerprint])
            if check["ok"] and check["fingerprint"] == fingerprint:
                return {"fingerprint": fingerprint, "path": path, "identity": check["identity"],
                        "digest": parts["digest"], "changed": False}
        base = signature_dir(lookaside, parts["name"], parts["digest"])
        path = os.path.join(base, "signature-%d" % (len(signature_paths(lookaside, parts["name"], parts["digest"])) + 1))
        result = {"fingerprint": fingerprint, "path": path, "identity": identity, "digest": parts["digest"],
                  "changed": True}
        if check_mode:
            return result
        made = os.path.join(ring.home, "signature")
        pipe, feeder = _passphrase_pipe(ring.home, signing.get("passphrase"))
        try:
            rc, out, err = run(["skopeo", "standalone-sign", "--passphrase-file", pipe, manifest, identity,
                                fingerprint, "--output", made], env=ring.env(), check=False, timeout=120,
                               what="skopeo standalone-sign")
        finally:
            _release(pipe, feeder)
        if rc != 0:
            detail = (err or out).strip().splitlines()
            raise ImmutableInfraError("signing %s@%s with key %s failed: %s" % (
                identity, parts["digest"], fingerprint, detail[-1] if detail else "rc=%d" % rc))
        os.makedirs(base, exist_ok=True)
        result["path"] = _store(made, base)
    return result


def _store(made, base):
    """Place a signature as the next free signature-N; a link never overwrites one stored meanwhile."""
    staged = os.path.join(base, ".signature-%d.tmp" % os.getpid())
    shutil.copyfile(made, staged)
    try:
        index = 1
        while True:
            path = os.path.join(base, "signature-%d" % index)
            try:
                os.link(staged, path)
                return path
            except FileExistsError:
                index += 1
    finally:
        os.unlink(staged)


def sign_or_verify(catalog, params, check_mode=False):
    """image_sign: the version (name + version or digest, else the newest) signed (state=signed) or
    verified against params["signature_policy"] (state=verified). Returns the module result."""
    name = params["name"]
    if params.get("digest"):
        image = catalog.inspect(name, params["digest"])
    elif params.get("version"):
        image = catalog.inspect(name, params["version"])
    else:
        image = catalog.newest(name)
    if image is None:
        raise ImmutableInfraError("unknown image version %s%s in registry %s" % (
            name, "@" + params["digest"] if params.get("digest") else ":" + params["version"] if params.get("version")
            else " (no version at all)", catalog.registry))
    image = {k: image.get(k) for k in ("reference", "repository", "version", "tag", "digest")}
    if params.get("state", "signed") == "signed":
        signature = sign_version(catalog.client, image, params["signing"], params.get("lookaside"), check_mode)
        return {"changed": signature.pop("changed"), "image": image, "signature": signature}
    policy = dict(parse_policy(params["signature_policy"]))
    policy["lookaside"] = policy["lookaside"] or params.get("lookaside")
    try:
        signature = verify_version(catalog.client, image, policy)
    except ImmutableInfraError as exc:
        if policy["require"]:
            raise ImmutableInfraError(exc.msg, image=image, **exc.details)
        signature = dict(exc.details.get("signature") or {}, verified=False)
        return {"changed": False, "image": image, "signature": signature, "warnings": [exc.msg]}
    return {"changed": False, "image": image, "signature": signature}
