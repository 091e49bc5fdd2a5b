"""
Orphan recordings (L{callcenter.ivr.orphans}) removed when the IVR service
starts: real files under a recordings directory, the real store on the
backend chosen with --db, worked in the reactor's threads.
"""

import datetime
import os
import time

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThreadPool

from callcenter.context import Components
from callcenter.ivr import bulletins as b
from callcenter.ivr.dialogue import MemoryPrompter
from callcenter.ivr.orphans import MINIMUM_AGE_SECONDS, sweep_orphans
from callcenter.ivr.service import IVRService
from outcomes import CapturedLog
from test_bulletins_store import NOON

NOW = time.time()
OLD = NOW - MINIMUM_AGE_SECONDS - 60
RECENT = NOW - MINIMUM_AGE_SECONDS + 60


@pytest.fixture
def recordings(tmp_path):
    return str(tmp_path / "recordings")


def write(recordings, relative, changed):
    path = os.path.join(recordings, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as file:
        file.write(b"RIFF")
    os.utime(path, (changed, changed))


def files(recordings):
    return sorted(
        os.path.relpath(os.path.join(folder, name), recordings)
        for folder, _, names in os.walk(recordings) for name in names
    )


def _seed(connection):
    b.add_category(connection, "1", "公司公告", "Company news")
    b.add_expert(connection, "88", "王专家", "Expert Wang", "h")
    b.add_bulletin(connection, "1", "bulletins/20261207/heard.wav", 1000, NOON)
    b.add_bulletin(connection, "1", "bulletins/20261207/expired.wav", 1000, NOON,
                   expire_at=NOON + datetime.timedelta(hours=1))
    b.add_commentary(connection, "88", "commentaries/20261207/draft.wav", 1000)
    deleted = b.add_commentary(connection, "88", "commentaries/20261207/deleted.wav", 1000)
    b.delete_commentary(connection, deleted, "88")


def started_ivr(store, recordings):
    clock = Clock()
    clock.advance(NOW)
    ivr = IVRService(Components(), MemoryPrompter(), store=store, reactor=reactor, clock=clock, recordings=recordings)
    ivr.startService()
    return ivr


@pytest_twisted.inlineCallbacks
def test_the_ivr_removes_at_its_start_old_files_no_row_refers_to(running_store, recordings):
    yield running_store.transaction(_seed)
    kept = [
        "bulletins/20261207/heard.wav",
        "bulletins/20261207/expired.wav",  # what investors heard is kept
        "commentaries/20261207/draft.wav",
        "bulletins/20261207/uploading.wav",  # no row yet, but written less than an hour ago
        "bulletins/20261207/uploading.wav.part",
        "prompts/old.wav",  # not a recording folder
    ]
    removed = [
        "bulletins/20261207/killed-before-its-row.wav",
        "bulletins/20261206/half-written.wav.part",
        "commentaries/20261207/deleted.wav",
        "commentaries/20261207/killed-before-its-row.wav",
    ]
    for relative in kept + removed:
        write(recordings, relative, RECENT if "uploading" in relative else OLD)
    with CapturedLog() as logged:
        ivr = started_ivr(running_store, recordings)
        yield ivr.stopService()
    assert files(recordings) == sorted(kept)
    said = sorted(event["path"] for event in logged.formats("removed {path}"))
    assert said == sorted(removed)
    assert [event["directory"] for event in logged.formats("removed {path}")] == [recordings] * len(removed)


@pytest_twisted.inlineCallbacks
def test_recordings_and_no_rows_at_all_are_taken_for_a_mistake(running_store, recordings):
    write(recordings, "bulletins/20261207/a.wav", OLD)
    write(recordings, "bulletins/20261207/b.wav.part", OLD)
    with CapturedLog() as logged:
        removed = yield sweep_orphans(running_store, in_thread, recordings, NOW)
    assert removed == ["bulletins/20261207/b.wav.part"]
    assert files(recordings) == ["bulletins/20261207/a.wav"]
    [warning] = logged.formats("none in the database")
    assert warning["count"] == 1


@pytest_twisted.inlineCallbacks
def test_no_recordings_directory_is_nothing_to_do(running_store, recordings):
    ivr = started_ivr(running_store, recordings)
    yield ivr.stopService()
    assert not os.path.exists(recordings)


@pytest_twisted.inlineCallbacks
def test_a_failed_sweep_is_logged_and_stops_nothing(recordings):
    class BrokenStore:
        def transaction(self, work, *args):
            return defer.fail(RuntimeError("the database is gone"))

    write(recordings, "bulletins/20261207/a.wav", OLD)
    with CapturedLog() as logged:
        ivr = started_ivr(BrokenStore(), recordings)
        yield ivr.stopService()
    [failure] = [event for event in logged if event.get("log_failure") is not None]
    assert failure["log_failure"].check(RuntimeError)
    assert files(recordings) == ["bulletins/20261207/a.wav"]


def in_thread(function, *args):
    return deferToThreadPool(reactor, reactor.getThreadPool(), function, *args)
