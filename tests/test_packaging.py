"""
The built distribution carries the twistd plugin without breaking Twisted's
own plugin package (plain find: drops it; an __init__.py there hides
Twisted's plugins).
"""

import os
import subprocess
import sys
import zipfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def test_the_wheel_ships_the_plugin_and_the_migrations_and_no_twisted_init(tmp_path):
    # No build isolation: build with the venv's own setuptools and wheel
    # (the Makefile installs them) rather than download them again.
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), ROOT],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("callcenter-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "twisted/plugins/callcenter_plugin.py" in names
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names
    assert "callcenter/store/migrations/env.py" in names
    assert "callcenter/store/migrations/versions/0001_foundation.py" in names
    assert not [name for name in names if name.startswith("tests/")]


def test_the_source_tree_has_no_init_in_twisted():
    assert not os.path.exists(os.path.join(ROOT, "twisted", "__init__.py"))
    assert not os.path.exists(os.path.join(ROOT, "twisted", "plugins", "__init__.py"))
