"""The seal check (_seal.seal_findings) on planted image trees, and _image_files.inside (symlinks
resolved inside the image, never on the host)."""
from __future__ import annotations

import os

from ansible_collections.immutable.infra.plugins.module_utils import _seal as seal
from ansible_collections.immutable.infra.plugins.module_utils._evidence import not_sealed
from ansible_collections.immutable.infra.plugins.module_utils._image_files import inside

KEY = ("-----BEGIN OPENSSH PRIVATE KEY-----\n"
       "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
       "-----END OPENSSH PRIVATE KEY-----\n")
PEM = ("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,0011\n\n"
       "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n-----END RSA PRIVATE KEY-----\n")


def plant(root, files, links=()):
    for rel, text in files.items():
        path = os.path.join(str(root), rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write(text)
    for rel, target in links:
        path = os.path.join(str(root), rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.symlink(target, path)
    return str(root)


def sealed_base(root):
    """What a sealed Debian image holds: an empty machine id, the dbus link to it, public keys,
    certificates, package data mentioning key markers."""
    return plant(root, {
        "etc/machine-id": "",
        "etc/ssh/sshd_config": "PermitRootLogin no\n",
        "etc/ssl/certs/ca.pem": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        "root/.ssh/id_ed25519.pub": "ssh-ed25519 AAAA test\n",
        "root/.bash_history": "",
        "var/lib/dpkg/info/openssh-server.postinst": KEY,
        "opt/app/README": "put your -----BEGIN PRIVATE KEY----- in the vault, not here\n",
        "root/.docker/config.json": '{"auths": {}}',
        "root/.aws/config": "[default]\nregion = eu-west-1\n",
    }, links=[("var/lib/dbus/machine-id", "/etc/machine-id")])


def test_a_sealed_image_has_no_findings(tmp_path):
    assert seal.seal_findings(sealed_base(tmp_path)) == []


def test_machine_id_uninitialized_is_sealed(tmp_path):
    root = sealed_base(tmp_path)
    plant(tmp_path, {"etc/machine-id": "uninitialized\n"})
    assert seal.seal_findings(root) == []


def test_every_kind_is_found_and_named(tmp_path):
    root = sealed_base(tmp_path)
    plant(tmp_path, {
        "etc/ssh/ssh_host_ed25519_key": KEY,
        "etc/ssh/ssh_host_ed25519_key.pub": "ssh-ed25519 AAAA root@build\n",
        "etc/ssl/private/ssl-cert-snakeoil.key": "x",
        "root/.ssh/id_rsa": "whatever is in it",
        "home/deploy/.ssh/id_ed25519": KEY,
        "srv/app/tls.key": PEM,
        "opt/app/key.pem": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n",
        "home/deploy/.zsh_history": "ls\n",
        "root/.python_history": "import os\n",
        "root/.aws/credentials": "[default]\naws_access_key_id = AKIA\n",
        "home/deploy/.config/gcloud/application_default_credentials.json": "{}",
        "home/deploy/.azure/msal_token_cache.json": "{}",
        "root/.docker/config.json": '{"auths": {"registry.example": {"auth": "dXNlcjpwdw=="}}}',
        "root/.kube/config": "apiVersion: v1\n",
        "root/.netrc": "machine example login a password b\n",
    })
    os.unlink(os.path.join(root, "var/lib/dbus/machine-id"))
    plant(tmp_path, {"etc/machine-id": "0123456789abcdef0123456789abcdef\n",
                     "var/lib/dbus/machine-id": "0123456789abcdef0123456789abcdef\n"})
    found = {f["path"]: f["what"] for f in seal.seal_findings(root)}
    assert found == {
        "/etc/machine-id": "machine id (non-empty /etc/machine-id)",
        "/var/lib/dbus/machine-id": "machine id (regular non-empty /var/lib/dbus/machine-id)",
        "/etc/ssh/ssh_host_ed25519_key": "SSH host key",
        "/etc/ssh/ssh_host_ed25519_key.pub": "SSH host key",
        "/etc/ssl/private/ssl-cert-snakeoil.key": "private key (/etc/ssl/private)",
        "/root/.ssh/id_rsa": "private key",
        "/home/deploy/.ssh/id_ed25519": "private key",
        "/srv/app/tls.key": "private key (RSA block)",
        "/opt/app/key.pem": "private key",
        "/home/deploy/.zsh_history": "shell history",
        "/root/.python_history": "shell history",
        "/root/.aws/credentials": "cloud credentials (AWS)",
        "/home/deploy/.config/gcloud/application_default_credentials.json": "cloud credentials (gcloud)",
        "/home/deploy/.azure": "cloud credentials (Azure)",
        "/root/.docker/config.json": "credentials (container registry auths)",
        "/root/.kube/config": "cloud credentials (kubeconfig)",
        "/root/.netrc": "credentials (.netrc)",
    }


def test_seal_allow_accepts_paths_and_directories(tmp_path):
    root = sealed_base(tmp_path)
    plant(tmp_path, {"etc/ssl/private/app.key": "x", "etc/ssl/private/other.key": "x", "root/.ssh/id_rsa": "x",
                     "srv/keys/a.pem": PEM})
    found = seal.seal_findings(root, allow=["/etc/ssl/private", "srv/keys/a.pem"])
    assert found == [{"path": "/root/.ssh/id_rsa", "what": "private key"}]


def test_symlinks_are_not_followed_to_the_host(tmp_path):
    # An absolute link in an image points into the image, never at the host's file of that name.
    root = sealed_base(tmp_path)
    os.unlink(os.path.join(root, "etc/machine-id"))
    plant(tmp_path, {}, links=[("etc/machine-id", "/etc/machine-id"), ("root/.zsh_history", "/etc/hostname"),
                               ("opt/hostroot", "/")])
    assert os.path.getsize("/etc/hostname") > 0    # followed, these would be findings
    assert seal.seal_findings(root) == []


def test_the_error_names_every_finding():
    err = not_sealed("web:4", [{"path": "/etc/machine-id", "what": "machine id (non-empty /etc/machine-id)"},
                               {"path": "/root/.ssh/id_ed25519", "what": "private key"}])
    assert err.msg.startswith("image web:4 is not sealed: /etc/machine-id (machine id (non-empty /etc/machine-id)), "
                              "/root/.ssh/id_ed25519 (private key); remove them in the recipe")
    assert "seal_allow" in err.msg and len(err.details["seal_findings"]) == 2


def test_inside_resolves_links_within_the_root(tmp_path):
    root = plant(tmp_path, {"usr/lib/os-release": "ID=debian\n"},
                 links=[("etc/os-release", "../usr/lib/os-release"), ("etc/abs", "/usr/lib/os-release"),
                        ("etc/out", "../../../../etc/passwd"), ("etc/loop", "loop")])
    assert inside(root, "etc/os-release") == os.path.join(root, "usr/lib/os-release")
    assert inside(root, "etc/abs") == os.path.join(root, "usr/lib/os-release")
    assert inside(root, "etc/out") == os.path.join(root, "etc/passwd")   # '..' stops at the image's root
    assert inside(root, "etc/loop") is None
