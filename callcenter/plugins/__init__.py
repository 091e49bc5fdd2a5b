"""
Subsystem plugins: each module here (or in any ``callcenter/plugins/``
directory without ``__init__.py`` on ``sys.path``, which is how a third party
adds one) defines objects providing L{callcenter.interfaces.ISubsystem}.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))
__all__ = []
