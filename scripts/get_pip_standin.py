"""Stand-in for the get-pip.py that ansible-test downloads from a host that is
not reachable here: bootstrap pip from the wheel bundled with ensurepip, then
install the requested packages (pip==X, setuptools, wheel) from the index."""
import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
packages = [a for a in sys.argv[1:] if not a.startswith("-")]
if packages:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q"] + packages)
