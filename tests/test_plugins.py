"""The plugin seams: twistd finds callcenter; callcenter finds subsystems."""

import importlib
import subprocess
import sys

import pytest
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from zope.interface.verify import verifyObject

from callcenter.interfaces import ISubsystem
from callcenter.subsystems import DuplicateSubsystem, discover
from processes import environment


def test_twistd_finds_the_callcenter_plugin():
    """A plugin file that fails to import silently vanishes from twistd."""
    from twisted import plugins

    makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker, plugins)}
    assert "callcenter" in makers
    assert makers["callcenter"].options is not None


def test_twistd_lists_callcenter_in_its_help():
    result = subprocess.run(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "--help"],
        capture_output=True,
        text=True,
    )
    assert "callcenter" in result.stdout


def test_shipped_subsystems_provide_the_interface():
    found = discover()
    assert "web" in found
    for plugin in found.values():
        assert verifyObject(ISubsystem, plugin)


def test_a_third_party_subsystem_on_the_path_is_discovered():
    result = subprocess.run(
        [sys.executable, "-c", "from callcenter.subsystems import discover; print(sorted(discover()))"],
        capture_output=True,
        text=True,
        env=environment(),
    )
    assert result.stdout.strip() == "['agi', 'ivr', 'ledger', 'notify', 'radius', 'telephony', 'trading', 'web']", result.stderr


def make_package(tmp_path, monkeypatch, name, source):
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "mine.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module(name)


PLUGIN_HEADER = """
from twisted.plugin import IPlugin
from zope.interface import implementer
from callcenter.interfaces import ISubsystem
"""


def test_a_plugin_that_does_not_provide_the_interface_is_left_out(tmp_path, monkeypatch):
    package = make_package(
        tmp_path,
        monkeypatch,
        "hollow_plugins",
        PLUGIN_HEADER
        + """
@implementer(IPlugin, ISubsystem)
class Hollow:
    name = "hollow"

hollow = Hollow()
""",
    )
    assert discover(package) == {}


def test_two_plugins_with_one_name_are_an_error(tmp_path, monkeypatch):
    package = make_package(
        tmp_path,
        monkeypatch,
        "twin_plugins",
        PLUGIN_HEADER
        + """
@implementer(IPlugin, ISubsystem)
class Twin:
    name = "twin"
    description = "a twin"
    config_schema = None
    def makeService(self, config, context):
        pass

one = Twin()
two = Twin()
""",
    )
    with pytest.raises(DuplicateSubsystem, match="two subsystem plugins are named 'twin'"):
        discover(package)
