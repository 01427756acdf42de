"""Make `ansible_collections.immutable.infra` importable from the checkout
when pytest runs outside ansible-test."""
import os
import sys

_top = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
_collections = os.path.join(_top, ".cache", "collections")
if os.path.basename(os.path.dirname(os.path.dirname(_top))) != "ansible_collections" and _collections not in sys.path:
    sys.path.insert(0, _collections)
