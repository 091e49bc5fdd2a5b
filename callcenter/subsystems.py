"""Finding the subsystem plugins."""

from twisted.logger import Logger
from twisted.plugin import getPlugins
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from callcenter.interfaces import ISubsystem

log = Logger()


class DuplicateSubsystem(Exception):
    pass


def discover(package=None):
    """
    Every installed subsystem plugin, by name.  A plugin that does not
    really provide L{ISubsystem} is logged and left out.

    @raise DuplicateSubsystem: two plugins claim one name.
    """
    if package is None:
        from callcenter import plugins as package
    found = {}
    for plugin in getPlugins(ISubsystem, package):
        try:
            verifyObject(ISubsystem, plugin)
        except Invalid as e:
            log.error("ignoring subsystem plugin {plugin!r}: {why}", plugin=plugin, why=e)
            continue
        if plugin.name in found:
            raise DuplicateSubsystem(
                f"two subsystem plugins are named {plugin.name!r}: "
                f"{found[plugin.name]!r} and {plugin!r}"
            )
        found[plugin.name] = plugin
    return found
