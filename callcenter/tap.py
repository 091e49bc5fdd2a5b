"""
``twistd callcenter``: options and the service tree, nothing else.

A broken configuration or a resource that cannot be had (a port in use, a
database that will not open) ends the process with one line per problem on
standard error and a non-zero status: 2 for the configuration, 1 for
start-up.  Never twistd's usage text, never a traceback.
"""

import gc
import os

from twisted.application.service import Application, MultiService
from twisted.logger import ILogObserver
from twisted.python import usage

from callcenter.config import load_config
from callcenter.errors import ConfigError, StartupError
from callcenter.log import make_observer
from callcenter.subsystems import DuplicateSubsystem, discover

CONFIG_ERROR = 2
STARTUP_ERROR = 1


def default_config_path():
    return os.environ.get("CALLCENTER_CONFIG", "etc/callcenter.toml")


def exit_with(lines, status):
    # fd 2, not sys.stderr: under twistd sys.stderr feeds the log, where the
    # one line that matters would be buried or lost before logging starts.
    os.write(2, "".join(f"callcenter: {line}\n" for line in lines).encode("utf-8"))
    raise SystemExit(status)


def load(path):
    """The validated config and the plugins, or exit with the problems."""
    try:
        plugins = discover()
        return load_config(path, plugins), plugins
    except ConfigError as e:
        exit_with(e.problems, CONFIG_ERROR)
    except DuplicateSubsystem as e:
        exit_with([f"{path}: {e}"], CONFIG_ERROR)


class Options(usage.Options):
    synopsis = "[--config FILE]"
    longdesc = "Runs every subsystem enabled in the configuration file in one process."
    optParameters = [
        ["config", "c", None, "The configuration file [default: $CALLCENTER_CONFIG or etc/callcenter.toml]."]
    ]

    def postOptions(self):
        self["config"] = self["config"] or default_config_path()
        self.config, self.plugins = load(self["config"])
        twistd = getattr(self, "parent", None)
        if twistd is not None and _logging_left_to_us(twistd, self.config.log):
            global _twistd_log_config
            _twistd_log_config = self.config.log
            twistd["logger"] = f"{__name__}.{twistd_log_observer.__name__}"


# twistd takes its --logger option only as a dotted name, which it resolves
# after our options are parsed: this is how the [log] table reaches it.
_twistd_log_config = None


def twistd_log_observer():
    return make_observer(_twistd_log_config)


def _logging_left_to_us(twistd, log_config):
    if twistd.get("logger") or twistd.get("logfile"):
        return False  # Chosen on twistd's command line: that wins.
    # A daemon's standard output goes nowhere: leave it twistd's log file
    # unless [log] names one.
    return bool(twistd.get("nodaemon")) or log_config.file != "-"


class StartupGuard(MultiService):
    """
    Turns a L{StartupError} into one line on standard error and an exit
    status.  (Run under a supervisor such as systemd with C{-n}: a daemonised
    twistd has no standard error left to say why it stopped.)
    """

    def __init__(self, root):
        super().__init__()
        self.root = root
        root.setServiceParent(self)

    def privilegedStartService(self):
        self._guarded(super().privilegedStartService)

    def startService(self):
        self._guarded(super().startService)
        tune_garbage_collector()

    def _guarded(self, start):
        try:
            start()
        except StartupError as e:
            exit_with([str(e)], STARTUP_ERROR)


# Young objects are collected far less often than Python's default (every
# 700 allocations): SIP transactions live 32 s (Timer J), each holding
# parsed messages, so each collection walked tens of thousands of them.
# Measured with bench/register_vs_kamailio.py: 310-500 REGISTER/s sustained
# before, about 1,000 after (1,200 with the collector off).  Reference
# cycles (failures, Deferred chains) still go, in bigger batches.
GC_THRESHOLDS = (50_000, 20, 20)


def tune_garbage_collector():
    """For the server process, once started (not for tests running services in theirs)."""
    # What exists now (modules, config, tables, prompts) lives as long as
    # the process: frozen, the collector never walks it again.
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def makeService(options):
    from twisted.internet import reactor

    from callcenter.server import CallcenterService

    return StartupGuard(CallcenterService(options.config, options.plugins, reactor))


def application(path=None):
    """The twistd application for ``tac/callcenter.tac``."""
    options = Options()
    options.parseOptions(["--config", path or default_config_path()])
    app = Application("callcenter")
    app.setComponent(ILogObserver, make_observer(options.config.log))
    makeService(options).setServiceParent(app)
    return app
