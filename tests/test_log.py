"""
Log formats, bound loggers and the [log] observer (L{callcenter.log}).
"""

import io
import json
import re
from datetime import datetime, timezone

import pytest
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from callcenter.config import LogConfig
from callcenter.log import (
    bind,
    format_json,
    format_text,
    make_observer,
    new_correlation_id,
)

# 2026-11-25T19:00:00.500 UTC: half a second is exact in binary floating point.
TIME = datetime(2026, 11, 25, 19, 0, 0, 500000, tzinfo=timezone.utc).timestamp()
SHOWN_TIME = "2026-11-25T19:00:00.500+00:00"


def an_event(**extra):
    return {
        "log_time": TIME,
        "log_level": LogLevel.warn,
        "log_namespace": "web",
        "log_format": "hello {name}",
        "name": "world",
        **extra,
    }


def a_failure():
    try:
        raise ValueError("boom")
    except ValueError:
        return Failure()


@pytest.fixture
def emitted():
    return []


@pytest.fixture
def log(emitted):
    return Logger(namespace="test.ns", observer=emitted.append)


# format_text ---------------------------------------------------------------


def test_format_text_shows_time_system_level_message_and_cid():
    assert format_text(an_event(cid="abc123")) == (
        f"{SHOWN_TIME} [web#warn] hello world [cid=abc123]\n"
    )


def test_format_text_without_cid_has_no_cid_suffix():
    assert format_text(an_event()) == f"{SHOWN_TIME} [web#warn] hello world\n"


def test_format_text_with_empty_cid_has_no_cid_suffix():
    assert format_text(an_event(cid="")) == f"{SHOWN_TIME} [web#warn] hello world\n"


def test_format_text_prefers_log_system_over_namespace():
    assert format_text(an_event(log_system="sip")).startswith(f"{SHOWN_TIME} [sip#warn] ")


def test_format_text_of_a_bare_event_uses_defaults():
    assert format_text({"log_format": "x"}) == "1970-01-01T00:00:00.000+00:00 [-#info] x\n"


def test_format_text_indents_continuation_lines_of_a_message():
    text = format_text(an_event(log_format="first\nsecond\nthird"))

    assert text == f"{SHOWN_TIME} [web#warn] first\n\tsecond\n\tthird\n"


def test_format_text_indents_every_line_of_a_failure_traceback(log, emitted):
    failure = a_failure()
    log.failure("it broke", failure)

    text = format_text(emitted[0])

    first, *rest = text.rstrip("\n").split("\n")
    assert re.fullmatch(r"\S+ \[test\.ns#critical\] it broke", first)
    assert rest, "no traceback"
    for line in rest:
        assert line.startswith("\t"), repr(line)
    body = "\n".join(line[1:] for line in rest)
    assert "Traceback (most recent call last):" in body
    assert "ValueError: boom" in body
    assert "raise ValueError" in body


def test_format_text_failure_keeps_cid_on_the_message_line(log, emitted):
    # grep cid=... must find the line saying what failed, not a stray line
    # after the traceback.
    log.failure("it broke", a_failure(), cid="abc123")

    first_line = format_text(emitted[0]).split("\n")[0]

    assert first_line.endswith("] it broke [cid=abc123]"), repr(first_line)


def test_format_text_of_logger_events(log, emitted):
    log.info("count {n}", n=3, cid="c1")

    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00 \[test\.ns#info\] count 3 \[cid=c1\]\n",
        format_text(emitted[0]),
    )


# format_json ---------------------------------------------------------------


def test_format_json_is_one_line_of_json_with_the_standard_keys():
    line = format_json(an_event(cid="abc123"))

    assert line.endswith("\n")
    assert line.count("\n") == 1
    record = json.loads(line)
    assert record["time"] == SHOWN_TIME
    assert record["level"] == "warn"
    assert record["system"] == "web"
    assert record["message"] == "hello world"
    assert record["cid"] == "abc123"


def test_format_json_without_cid_has_no_cid_key():
    assert "cid" not in json.loads(format_json(an_event()))


def test_format_json_includes_scalar_extra_keys_only():
    record = json.loads(
        format_json(
            an_event(
                order="A1", quantity=300, price=9.5, urgent=True,
                items=[1, 2], detail={"k": "v"}, missing=None, obj=object(),
            )
        )
    )

    assert record == {
        "time": SHOWN_TIME,
        "level": "warn",
        "system": "web",
        "message": "hello world",
        "name": "world",
        "order": "A1",
        "quantity": 300,
        "price": 9.5,
        "urgent": True,
    }


def test_format_json_leaves_out_twisted_internal_keys(log, emitted):
    log.info("hi {who}", who="you")

    record = json.loads(format_json(emitted[0]))

    assert set(record) == {"time", "level", "system", "message", "who"}
    assert record["message"] == "hi you"
    assert record["system"] == "test.ns"
    assert record["level"] == "info"


def test_format_json_extra_keys_do_not_replace_standard_ones():
    # ("level" cannot be a Logger keyword: it is emit()'s own argument.)
    record = json.loads(
        format_json(an_event(level="fake", time="fake", system="fake"))
    )

    assert record["level"] == "warn"
    assert record["system"] == "web"
    assert record["time"] == SHOWN_TIME
    assert record["message"] == "hello world"


def test_format_json_keeps_newlines_and_non_ascii_inside_one_line():
    line = format_json(an_event(log_format="第一行\n第二行", cid="c"))

    assert line.count("\n") == 1
    assert json.loads(line)["message"] == "第一行\n第二行"
    assert "第一行" in line


def test_format_json_includes_the_traceback_of_a_failure(log, emitted):
    log.failure("it broke", a_failure(), cid="c9")

    line = format_json(emitted[0])

    assert line.count("\n") == 1
    record = json.loads(line)
    assert record["level"] == "critical"
    assert record["message"] == "it broke"
    assert record["cid"] == "c9"
    assert "Traceback (most recent call last):" in record["traceback"]
    assert "ValueError: boom" in record["traceback"]


def test_format_json_without_failure_has_no_traceback():
    assert "traceback" not in json.loads(format_json(an_event()))


# bind ----------------------------------------------------------------------


def test_bind_adds_the_fields_to_every_event(log, emitted):
    bound = bind(log, cid="x1")

    bound.debug("a")
    bound.info("b {n}", n=1)
    bound.warn("c")
    bound.error("d")
    bound.critical("e")
    bound.failure("f", a_failure())

    assert [e["cid"] for e in emitted] == ["x1"] * 6
    assert emitted[1]["n"] == 1
    assert emitted[5]["log_failure"].check(ValueError)


def test_bind_keeps_namespace_and_observer(log, emitted):
    bound = bind(log, cid="x1")

    bound.info("hello")

    assert bound.namespace == "test.ns"
    assert emitted[0]["log_namespace"] == "test.ns"
    assert emitted[0]["log_level"] is LogLevel.info


def test_bind_explicit_keys_win_over_bound_ones(log, emitted):
    bind(log, cid="bound").info("hello", cid="explicit")

    assert emitted[0]["cid"] == "explicit"


def test_bind_does_not_change_the_original_logger(log, emitted):
    bind(log, cid="x1").info("bound")
    log.info("plain")

    assert "cid" not in emitted[1]


def test_bind_several_fields(log, emitted):
    bind(log, cid="x1", call="c7").info("hello")

    assert (emitted[0]["cid"], emitted[0]["call"]) == ("x1", "c7")


def test_binding_a_bound_logger_keeps_the_earlier_fields(log, emitted):
    bind(bind(log, cid="x1"), leg="b").info("hello")

    assert emitted[0]["leg"] == "b"
    assert emitted[0].get("cid") == "x1"


def test_bound_fields_are_formatted_as_cid(log, emitted):
    bind(log, cid="x1").info("hello")

    assert format_text(emitted[0]).endswith(" hello [cid=x1]\n")
    assert json.loads(format_json(emitted[0]))["cid"] == "x1"


# make_observer -------------------------------------------------------------


def lines_logged(log_config, emit):
    stream = io.StringIO()
    log = Logger(namespace="test.obs", observer=make_observer(log_config, stream=stream))
    emit(log)
    return stream.getvalue().splitlines()


def test_json_observer_at_warn_drops_info_and_keeps_warn_and_above():
    def emit(log):
        log.debug("debug")
        log.info("info")
        log.warn("warn")
        log.error("error")
        log.critical("critical")

    lines = lines_logged(LogConfig(format="json", level="warn"), emit)

    records = [json.loads(line) for line in lines]
    assert [r["message"] for r in records] == ["warn", "error", "critical"]
    assert [r["level"] for r in records] == ["warn", "error", "critical"]


@pytest.mark.parametrize(
    "level, kept",
    [
        ("debug", ["debug", "info", "warn", "error", "critical"]),
        ("info", ["info", "warn", "error", "critical"]),
        ("error", ["error", "critical"]),
        ("critical", ["critical"]),
    ],
)
def test_observer_level_is_the_least_severe_logged(level, kept):
    def emit(log):
        for name in ("debug", "info", "warn", "error", "critical"):
            getattr(log, name)(name)

    lines = lines_logged(LogConfig(format="json", level=level), emit)

    assert [json.loads(line)["message"] for line in lines] == kept


def test_text_observer_writes_text_lines():
    lines = lines_logged(LogConfig(format="text", level="info"), lambda log: log.info("hi", cid="c"))

    [line] = lines
    assert re.fullmatch(r"\S+ \[test\.obs#info\] hi \[cid=c\]", line)


def test_json_observer_writes_json_lines():
    lines = lines_logged(LogConfig(format="json", level="info"), lambda log: log.info("hi", cid="c"))

    [line] = lines
    record = json.loads(line)
    assert (record["message"], record["cid"], record["system"]) == ("hi", "c", "test.obs")


def test_observer_without_stream_appends_to_the_configured_file(tmp_path):
    path = tmp_path / "callcenter.log"
    path.write_text("earlier line\n", encoding="utf-8")
    observer = make_observer(LogConfig(format="json", level="info", file=str(path)))
    log = Logger(namespace="test.file", observer=observer)

    log.info("中文 message")
    log.debug("dropped")

    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "earlier line"
    assert [json.loads(line)["message"] for line in lines[1:]] == ["中文 message"]


def test_a_new_log_file_is_private_to_owner_and_group(tmp_path):
    path = tmp_path / "new.log"
    observer = make_observer(LogConfig(format="text", level="info", file=str(path)))
    Logger(namespace="test.file", observer=observer).info("caller 13800138000")
    assert path.stat().st_mode & 0o777 == 0o640


# correlation ids -----------------------------------------------------------


def test_new_correlation_ids_are_16_hex_chars_and_distinct():
    ids = [new_correlation_id() for _ in range(1000)]

    assert len(set(ids)) == 1000
    for cid in ids:
        assert re.fullmatch(r"[0-9a-f]{16}", cid)
