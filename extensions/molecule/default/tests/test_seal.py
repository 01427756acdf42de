"""Role immutable.infra.seal: nothing of the build, or of one machine, is left in the image.

prepare.yml planted each of these, so every test here can fail.
"""


def find(host, *args):
    """Paths `find ARGS` prints inside the instance."""
    result = host.run("find " + " ".join(["%s"] * len(args)), *args)
    assert result.rc == 0, result.stderr
    return result.stdout.split()


def test_machine_id_is_empty(host):
    machine_id = host.file("/etc/machine-id")
    assert machine_id.is_file
    assert machine_id.size == 0


def test_no_files_under_var_log(host):
    assert find(host, "/var/log", "-type", "f") == []


def test_no_ssh_host_keys(host):
    assert find(host, "/etc/ssh", "-name", "ssh_host_*") == []


def test_no_shell_histories(host):
    assert find(host, "/root", "/home", "-name", ".*_history") == []


def test_no_apt_lists_or_caches(host):
    assert find(host, "/var/lib/apt/lists", "/var/cache/apt", "-type", "f", "-not", "-name", "lock") == []
