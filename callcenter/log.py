"""
Logging with twisted.logger: readable text by default, one JSON object per
line when ``[log] format = "json"``.

Every call, order and message carries a correlation id (log key ``cid``);
both formats show it, so ``grep cid=...`` follows one call through SIP, IVR,
trading and notifications.
"""

import json
import sys
import uuid
from datetime import datetime, timezone

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
)
from twisted.python.logfile import LogFile

_levels = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
    "critical": LogLevel.critical,
}

# Keys twisted.logger and our formatters consume themselves.
_internal_keys = frozenset(
    {"log_logger", "log_source", "log_io", "log_trace", "log_flattened", "log_failure",
     "log_format", "log_level", "log_namespace", "log_time", "log_system", "cid",
     "format", "message", "isError", "time", "system", "failure", "why", "log_text",
     "printed"}
)


def new_correlation_id():
    """A short random id, unique enough to follow one call or order."""
    return uuid.uuid4().hex[:16]


class BoundLogger(Logger):
    """A Logger that adds fixed keys (e.g. C{cid}) to every event it emits."""

    def __init__(self, namespace=None, source=None, observer=None, fields=None):
        super().__init__(namespace, source, observer)
        self.fields = dict(fields or {})

    def __get__(self, instance, owner=None):
        bound = super().__get__(instance, owner)
        bound.fields = self.fields
        return bound

    def emit(self, level, format=None, **kwargs):
        super().emit(level, format, **{**self.fields, **kwargs})


def bind(logger, **fields):
    """C{bind(self.log, cid=call.cid).info(...)}: log with fixed keys."""
    inherited = getattr(logger, "fields", {})
    return BoundLogger(logger.namespace, logger.source, logger.observer, {**inherited, **fields})


def _timestamp(event):
    return datetime.fromtimestamp(event.get("log_time", 0), timezone.utc).isoformat(
        timespec="milliseconds"
    )


def _system(event):
    return event.get("log_system") or event.get("log_namespace") or "-"


def format_text(event):
    """C{2026-11-25T19:00:00.000+00:00 [web#info] message [cid=...]}"""
    level = event.get("log_level", LogLevel.info).name
    cid = event.get("cid")
    suffix = f" [cid={cid}]" if cid else ""
    text = formatEvent(event) + suffix
    failure = event.get("log_failure")
    if failure is not None:
        text += "\n" + failure.getTraceback().rstrip("\n")
    lines = text.replace("\n", "\n\t")
    return f"{_timestamp(event)} [{_system(event)}#{level}] {lines}\n"


def format_json(event):
    """One JSON object per line: time, level, system, message, cid, scalars."""
    record = {
        "time": _timestamp(event),
        "level": event.get("log_level", LogLevel.info).name,
        "system": _system(event),
        "message": formatEvent(event),
    }
    if event.get("cid"):
        record["cid"] = event["cid"]
    failure = event.get("log_failure")
    if failure is not None:
        record["traceback"] = failure.getTraceback()
    for key, value in event.items():
        if key not in _internal_keys and isinstance(value, (str, int, float, bool)):
            record.setdefault(key, value)
    return json.dumps(record, ensure_ascii=False, default=str) + "\n"


def make_observer(log_config, stream=None):
    """
    The observer for a [log] table: chosen format and level, written to
    C{stream}, else to the configured file ("-" is standard output).  A file
    rotates at 10 MB keeping ten old ones, and is readable by its owner and
    group only: logs carry investors' phone numbers.
    """
    if stream is None:
        if log_config.file == "-":
            # Take the real stdout now: twistd later replaces sys.stdout with
            # a file that logs, which would loop back into this observer.
            stream = sys.__stdout__
        else:
            stream = LogFile.fromFullPath(
                log_config.file, rotateLength=10_000_000, maxRotatedFiles=10, defaultMode=0o640
            )
    formatter = format_json if log_config.format == "json" else format_text
    return FilteringLogObserver(
        FileLogObserver(stream, formatter),
        [LogLevelFilterPredicate(defaultLogLevel=_levels[log_config.level])],
    )
