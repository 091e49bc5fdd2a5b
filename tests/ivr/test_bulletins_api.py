"""
The bulletins HTTP API (L{callcenter.ivr.bulletins_api}) end to end: real
HTTP on 127.0.0.1 through the web subsystem's root and site, the real
store (SQLite, or PostgreSQL with --db postgresql) worked in the reactor's
threads, PINs checked with argon2, uploads converted by the real child
process.  The server's time is a L{Clock} standing at L{NOON}, so what is
current, scheduled or expired does not depend on when the tests run; the
converter's timeout runs on it too.

Then the audio conversion (L{callcenter.ivr.upload_audio}) on its own.
"""

import base64
import datetime
import io
import math
import os
import struct
import sys
import wave
from array import array
from types import SimpleNamespace

import pytest
import pytest_twisted
import sqlalchemy as sa
import treq
from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.web.client import HTTPConnectionPool
from twisted.web.resource import Resource
from zope.interface import implementer
from zope.interface.verify import verifyObject

from callcenter.context import Components
from callcenter.interfaces import IWebAPI
from callcenter.ivr import bulletins as b
from callcenter.ivr import upload_audio
from callcenter.ivr.bulletins_api import BulletinsAPI, ConverterBusy, ProcessConverter
from callcenter.ivr.telephone_audio import resample
from callcenter.media import g711
from callcenter.media.wavfile import FRAME_BYTES, load_prompt
from callcenter.passwords import hash_password
from callcenter.store.schema import bulletins as bulletins_table
from callcenter.store.schema import editors
from callcenter.web.service import WebRoot
from callcenter.web.site import CorrelatedSite

UTC = datetime.timezone.utc
CST = datetime.timezone(datetime.timedelta(hours=8))
NOON = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
HOUR = datetime.timedelta(hours=1)
EDITOR, PIN = "1001", "2468"
HANGS = [sys.executable, "-c", "import sys, time; sys.stdin.buffer.read(); time.sleep(3600)"]


# -- WAV files to upload


def tone(rate, seconds, frequency=440, amplitude=8000, lead=0.3):
    """C{seconds} of a sine between C{lead} seconds of silence, 16-bit samples at C{rate}."""
    silence = [0] * int(lead * rate)
    sound = [round(amplitude * math.sin(2 * math.pi * frequency * i / rate)) for i in range(int(seconds * rate))]
    return array("h", silence + sound + silence)


def pcm_wav(samples, rate, channels=1):
    """A 16-bit PCM WAV; stereo repeats each sample in both channels."""
    if channels == 2:
        samples = array("h", (x for x in samples for _ in (0, 1)))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return buffer.getvalue()


def raw_wav(tag, channels, rate, bits, data):
    """A WAV of any format tag, written by hand (the wave module writes only PCM)."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHHH", tag, channels, rate, rate * block, block, bits, 0)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def g711_wav(samples, law):
    encode, tag = {"mulaw": (g711.linear_to_ulaw, 7), "alaw": (g711.linear_to_alaw, 6)}[law]
    return raw_wav(tag, 1, 8000, 8, encode(samples.tobytes()))


SPEECH = pcm_wav(tone(8000, 1.0), 8000)


# -- the server


def _seed(connection):
    b.add_category(connection, "1", "个股点评", "Share commentary")
    b.add_category(connection, "2", "大盘分析", "Market analysis")
    b.add_editor(connection, EDITOR, "王编辑", hash_password(PIN))
    b.add_editor(connection, "1002", "李编辑", hash_password("1357"))


class Operations(Resource):
    """Stands in for the operations app (/health) behind the root."""

    isLeaf = True

    def render_GET(self, request):
        return b"operations:" + request.path


class Server:
    def __init__(self, store, api, clock, recordings, base, pool):
        self.store = store
        self.api = api
        self.clock = clock
        self.recordings = recordings
        self.base = base
        self.pool = pool

    def request(self, method, path="", auth=(EDITOR, PIN), params=None, body=None, content_type="audio/wav",
                headers=None):
        """Fires with (status, parsed JSON body, response)."""
        sent = {"Content-Type": content_type} if body is not None else {}
        sent.update(headers or {})
        d = treq.request(method, self.base + path, params=params, data=body, headers=sent, auth=auth,
                         pool=self.pool)

        @defer.inlineCallbacks
        def read(response):
            content = yield response.json() if response.code != 204 else None
            return response.code, content, response

        return d.addCallback(read)

    def upload(self, wav=SPEECH, category="1", **params):
        return self.request("POST", params={"category": category, **params}, body=wav)

    def rows(self):
        return self.store.transaction(
            lambda c: [dict(r) for r in c.execute(sa.select(bulletins_table).order_by(bulletins_table.c.id))
                       .mappings()]
        )

    def files(self):
        """Every file under the recordings directory, relative to it."""
        found = []
        for folder, _, names in os.walk(self.recordings):
            found.extend(os.path.relpath(os.path.join(folder, name), self.recordings) for name in names)
        return sorted(found)

    @defer.inlineCallbacks
    def assert_nothing_kept(self):
        assert (yield self.rows()) == []
        assert self.files() == []


def in_thread(function, *args):
    return deferToThreadPool(reactor, reactor.getThreadPool(), function, *args)


@pytest.fixture
def clock():
    clock = Clock()
    clock.advance(NOON.timestamp())
    return clock


@pytest.fixture
def converter(clock):
    return ProcessConverter(reactor, clock)


@pytest.fixture
def server(running_store, clock, converter, tmp_path):
    pytest_twisted.blockon(running_store.transaction(_seed))
    recordings = str(tmp_path / "recordings")

    def now():
        return datetime.datetime.fromtimestamp(clock.seconds(), UTC)

    api = BulletinsAPI(running_store, b.Credentials(running_store, in_thread, now), recordings, converter,
                       in_thread, now)
    components = Components()
    components.provide(IWebAPI, api)
    port = reactor.listenTCP(0, CorrelatedSite(WebRoot(components, Operations())), interface="127.0.0.1")
    pool = HTTPConnectionPool(reactor, persistent=False)
    yield Server(running_store, api, clock, recordings, f"http://127.0.0.1:{port.getHost().port}/api/v1/bulletins",
                 pool)
    pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))
    pytest_twisted.blockon(pool.closeCachedConnections())


def assert_error(body, code, field=None):
    error = body["error"]
    assert error["code"] == code
    assert error["message_zh"] and error["message_en"]
    assert error["correlation_id"]
    if field is not None:
        assert error["field"] == field
    return error


def failed_attempts(server, editor_id):
    return server.store.transaction(
        lambda c: c.execute(
            sa.select(editors.c.failed_attempts, editors.c.locked_at).where(editors.c.editor_id == editor_id)
        ).one()
    )


# -- mounting and wiring


def test_the_api_provides_iwebapi():
    api = BulletinsAPI(None, None, "var/recordings", None, None, None)
    assert verifyObject(IWebAPI, api)
    assert api.prefix == "api/v1/bulletins"


@pytest_twisted.inlineCallbacks
def test_it_is_mounted_below_an_api_at_a_shorter_prefix(server):
    @implementer(IWebAPI)
    class Trading:
        prefix = "api/v1"

        def resource(self):
            return Operations()

    components = Components()
    components.provide(IWebAPI, Trading())
    components.provide(IWebAPI, server.api)
    port = reactor.listenTCP(0, CorrelatedSite(WebRoot(components, Operations())), interface="127.0.0.1")
    try:
        base = f"http://127.0.0.1:{port.getHost().port}/api/v1"
        response = yield treq.get(base + "/bulletins", auth=(EDITOR, PIN), pool=server.pool)
        assert response.code == 200
        assert [c["code"] for c in (yield response.json())["categories"]] == ["1", "2"]
        response = yield treq.get(base + "/funds", pool=server.pool)
        assert (yield response.content()) == b"operations:/api/v1/funds"
    finally:
        yield port.stopListening()


def test_the_ivr_plugin_provides_it_when_there_is_a_store(tmp_path):
    from callcenter.plugins.ivr import IVRConfig, ivr

    config = IVRConfig(prompts=str(tmp_path / "prompts"), recordings=str(tmp_path / "recordings"))
    with_store = SimpleNamespace(components=Components(), store=object(), reactor=reactor, clock=reactor)
    ivr.makeService(config, with_store)
    [api] = with_store.components.all(IWebAPI)
    assert isinstance(api, BulletinsAPI) and api.prefix == "api/v1/bulletins"
    without = SimpleNamespace(components=Components(), store=None, reactor=reactor, clock=reactor)
    ivr.makeService(config, without)
    assert without.components.all(IWebAPI) == []


# -- uploading


@pytest_twisted.inlineCallbacks
def test_an_upload_is_current_at_once_and_plays(server):
    status, body, response = yield server.upload(title="早盘点评 12月7日")
    assert status == 201, body
    assert response.headers.getRawHeaders("Location") == [f"/api/v1/bulletins/{body['id']}"]
    assert response.headers.getRawHeaders("Content-Type") == ["application/json; charset=utf-8"]
    assert (body["category"], body["title"], body["recorded_by"], body["status"]) == (
        "1", "早盘点评 12月7日", EDITOR, "current")
    assert body["publish_at"] == "2026-12-07T20:00:00+08:00" and body["expires_at"] is None
    assert body["source"] == {"encoding": "pcm16", "channels": 1, "sample_rate": 8000, "duration_ms": 1600}
    # The phone side finds it and plays it.
    [current] = yield server.store.transaction(b.current_bulletins, "1", NOON)
    assert (current.id, current.duration_ms, current.recorded_by) == (body["id"], body["duration_ms"], EDITOR)
    path = os.path.join(server.recordings, current.audio_path)
    assert current.audio_path.startswith(os.path.join("bulletins", "20261207", ""))
    assert b.recording_duration_ms(path) == current.duration_ms
    # The tone and 50 ms either side of it: the silence around is trimmed.
    assert 1000 <= current.duration_ms <= 1100
    for encoding in ("PCMU", "PCMA"):
        frames = load_prompt(path, encoding)
        assert (len(frames) - 1) * 20 < current.duration_ms <= len(frames) * 20
        assert all(len(frame) == FRAME_BYTES for frame in frames)
    # Nothing else was left: no temporary file beside it.
    assert server.files() == [current.audio_path]
    status, listed, _ = yield server.request("GET")
    assert status == 200
    assert listed["categories"] == [
        {"code": "1", "name_zh": "个股点评", "name_en": "Share commentary", "may_publish": True,
         "bulletins": [{k: v for k, v in body.items() if k != "source"}]},
        {"code": "2", "name_zh": "大盘分析", "name_en": "Market analysis", "may_publish": True, "bulletins": []},
    ]
    status, one, _ = yield server.request("GET", f"/{body['id']}")
    assert (status, one) == (200, listed["categories"][0]["bulletins"][0])


def zero_crossings_per_second(samples, rate):
    crossings = sum(1 for a, c in zip(samples, samples[1:]) if (a < 0) != (c < 0))
    return crossings * rate / len(samples)


@pytest_twisted.inlineCallbacks
def test_44_1_khz_stereo_becomes_8_khz_mono_at_the_same_pitch(server):
    upload = pcm_wav(tone(44100, 1.0, frequency=1000), 44100, channels=2)
    status, body, _ = yield server.upload(upload)
    assert status == 201, body
    assert body["source"] == {"encoding": "pcm16", "channels": 2, "sample_rate": 44100, "duration_ms": 1600}
    [row] = yield server.rows()
    with wave.open(os.path.join(server.recordings, row["audio_path"]), "rb") as stored:
        assert (stored.getnchannels(), stored.getframerate(), stored.getsampwidth()) == (1, 8000, 2)
        samples = array("h", stored.readframes(stored.getnframes()))
    if sys.byteorder == "big":
        samples.byteswap()
    loud = [i for i, x in enumerate(samples) if abs(x) > 1000]
    tone_part = samples[loud[0] : loud[-1] + 1]
    assert 0.95 <= len(tone_part) / 8000 <= 1.05
    # 1 kHz still: 2000 zero crossings a second.
    assert 1980 <= zero_crossings_per_second(tone_part, 8000) <= 2020
    # Levelled as the prompts are: -20 dBFS RMS.
    rms = math.sqrt(sum(x * x for x in tone_part) / len(tone_part))
    assert 20 * math.log10(rms / 32767) == pytest.approx(-20, abs=0.5)


@pytest.mark.parametrize("law", ["mulaw", "alaw"])
@pytest_twisted.inlineCallbacks
def test_g711_wavs_are_taken(server, law):
    status, body, _ = yield server.upload(g711_wav(tone(8000, 1.0), law))
    assert status == 201, body
    assert body["source"]["encoding"] == law
    [row] = yield server.rows()
    assert b.recording_duration_ms(os.path.join(server.recordings, row["audio_path"])) == row["duration_ms"]


@pytest_twisted.inlineCallbacks
def test_a_scheduled_bulletin_is_not_current_until_published(server):
    # Times with an offset, without one (China time), in UTC, and with a
    # bare "+" that the query string turns into a space.
    status, body, _ = yield server.upload(publish_at="2026-12-08T09:30+08:00", expires_at="2026-12-08T15:00")
    assert status == 201, body
    assert (body["status"], body["publish_at"], body["expires_at"]) == (
        "scheduled", "2026-12-08T09:30:00+08:00", "2026-12-08T15:00:00+08:00")
    response = yield treq.post(server.base + "?category=2&publish_at=2026-12-08T01:30:00Z&expires_at="
                               "2026-12-08T15:00+08:00", data=SPEECH, headers={"Content-Type": "audio/wav"},
                               auth=(EDITOR, PIN), pool=server.pool)
    second = yield response.json()
    assert response.code == 201, second
    assert (second["publish_at"], second["expires_at"]) == ("2026-12-08T09:30:00+08:00", "2026-12-08T15:00:00+08:00")
    assert (yield server.store.transaction(b.current_bulletins, "1", NOON)) == []
    tomorrow = datetime.datetime(2026, 12, 8, 10, 0, tzinfo=CST)
    [heard] = yield server.store.transaction(b.current_bulletins, "1", tomorrow)
    assert heard.id == body["id"]


@pytest_twisted.inlineCallbacks
def test_withdrawing_takes_a_bulletin_off_the_air_and_keeps_its_recording(server):
    _, current, _ = yield server.upload()
    _, scheduled, _ = yield server.upload(publish_at="2026-12-08T09:30+08:00")
    status, body, _ = yield server.request("DELETE", f"/{current['id']}")
    assert status == 200
    assert (body["status"], body["expires_at"]) == ("expired", "2026-12-07T20:00:00+08:00")
    status, body, _ = yield server.request("DELETE", f"/{scheduled['id']}")
    assert status == 200
    # Never heard: it expires when it was to be published.
    assert (body["status"], body["expires_at"]) == ("expired", "2026-12-08T09:30:00+08:00")
    tomorrow = datetime.datetime(2026, 12, 8, 10, 0, tzinfo=CST)
    assert (yield server.store.transaction(b.current_bulletins, "1", tomorrow)) == []
    # Again: nothing changes.
    status, again, _ = yield server.request("DELETE", f"/{current['id']}")
    assert (status, again["expires_at"]) == (200, "2026-12-07T20:00:00+08:00")
    _, listed, _ = yield server.request("GET")
    assert listed["categories"][0]["bulletins"] == []
    assert len(server.files()) == 2
    status, body, _ = yield server.request("DELETE", "/999")
    assert status == 404
    assert_error(body, "bulletin_not_found")


# -- refusals


@pytest_twisted.inlineCallbacks
def test_a_wrong_pin_is_401_and_the_lockout_the_phones_too(server):
    status, body, response = yield server.request("GET", auth=None)
    assert status == 401
    assert_error(body, "credentials_required")
    assert response.headers.getRawHeaders("WWW-Authenticate") == ['Basic realm="callcenter bulletins", charset="UTF-8"']
    for attempt in range(1, b.MAX_PIN_ATTEMPTS):
        status, body, response = yield server.request("POST", params={"category": "1"}, body=SPEECH,
                                                      auth=(EDITOR, "0000"))
        assert status == 401
        assert_error(body, "wrong_pin")
        assert response.headers.getRawHeaders("WWW-Authenticate")
        assert (yield failed_attempts(server, EDITOR)).failed_attempts == attempt
    status, body, _ = yield server.request("GET", auth=(EDITOR, "0000"))
    assert status == 403
    assert_error(body, "editor_locked")
    status, body, _ = yield server.upload()
    assert status == 403
    assert_error(body, "editor_locked")
    # The same lock as by phone.
    phone = b.Credentials(server.store, in_thread, lambda: NOON)
    assert (yield phone.check("editor", EDITOR, PIN)) is b.PinCheck.LOCKED
    yield server.assert_nothing_kept()


@pytest_twisted.inlineCallbacks
def test_an_unknown_editor_is_answered_like_a_wrong_pin(server):
    for auth in (("9999", PIN), ("not digits", PIN), ("1" * 17, PIN)):
        status, body, _ = yield server.request("GET", auth=auth)
        assert status == 401
        assert_error(body, "wrong_pin")
    status, body, _ = yield server.request("GET", auth=None, headers={"Authorization": "Basic !!!"})
    assert status == 401
    assert_error(body, "credentials_required")
    status, body, _ = yield server.request("GET", auth=None, headers={
        "Authorization": "Basic " + base64.b64encode(b"1001").decode()})
    assert status == 401
    assert (yield failed_attempts(server, EDITOR)).failed_attempts == 0


@pytest_twisted.inlineCallbacks
def test_an_editor_publishes_only_in_the_categories_allowed(server):
    assert (yield server.store.transaction(b.revoke_categories, EDITOR, ["1"])) == ["2"]
    status, body, _ = yield server.upload(category="1")
    assert status == 403
    assert_error(body, "category_not_allowed", "category")
    yield server.assert_nothing_kept()
    status, body, _ = yield server.upload(category="2")
    assert status == 201
    _, listed, _ = yield server.request("GET")
    assert [c["may_publish"] for c in listed["categories"]] == [False, True]
    # Nor may they withdraw another category's bulletin.
    status, other, _ = yield server.request("POST", params={"category": "1"}, body=SPEECH, auth=("1002", "1357"))
    assert status == 201
    status, body, _ = yield server.request("DELETE", f"/{other['id']}")
    assert status == 403
    assert_error(body, "category_not_allowed")
    [row] = [r for r in (yield server.rows()) if r["id"] == other["id"]]
    assert row["expire_at"] is None
    # Allowed again, they may.
    yield server.store.transaction(b.allow_categories, EDITOR, ["1"])
    status, _, _ = yield server.request("DELETE", f"/{other['id']}")
    assert status == 200


NOT_WAV = {
    "mp3": (b"ID3\x04\x00" + bytes(2000), "audio/wav", 415, "not_wav"),
    "empty body": (b"", "audio/wav", 415, "not_wav"),
    "json": (b'{"audio": "..."}', "application/json", 415, "unsupported_media_type"),
    "a form": (b'--x\r\nContent-Disposition: form-data; name="f"\r\n\r\nRIFF\r\n--x--\r\n',
               "multipart/form-data; boundary=x", 415, "unsupported_media_type"),
    "curl's default type": (SPEECH, "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    "float": (raw_wav(3, 1, 8000, 32, bytes(32000)), "audio/wav", 415, "unsupported_audio"),
    "24-bit": (raw_wav(1, 1, 8000, 24, bytes(24000)), "audio/wav", 415, "unsupported_audio"),
    "3 channels": (raw_wav(1, 3, 8000, 16, bytes(48000)), "audio/wav", 415, "unsupported_audio"),
    "96 kHz": (pcm_wav(tone(96000, 0.1), 96000), "audio/x-wav", 415, "unsupported_audio"),
    "no data chunk": (b"RIFF\x04\x00\x00\x00WAVE", "audio/wav", 400, "invalid_wav"),
    "no samples": (raw_wav(1, 1, 8000, 16, b""), "audio/wav", 400, "empty_audio"),
    "silence": (pcm_wav(array("h", bytes(16000)), 8000), "audio/wav", 400, "silent_audio"),
    "a click": (pcm_wav(array("h", [0] * 4000 + [20000] * 80 + [0] * 4000), 8000), "audio/wav", 400,
                "silent_audio"),
}


@pytest.mark.parametrize("name", NOT_WAV)
@pytest_twisted.inlineCallbacks
def test_what_is_not_a_wav_we_take_is_refused_and_nothing_kept(server, name):
    upload, content_type, expected_status, code = NOT_WAV[name]
    status, body, _ = yield server.request("POST", params={"category": "1"}, body=upload, content_type=content_type)
    assert status == expected_status
    assert_error(body, code)
    yield server.assert_nothing_kept()


@pytest_twisted.inlineCallbacks
def test_too_large_and_too_long_are_413(server):
    server.api.max_body_bytes = 64 * 1024
    status, body, _ = yield server.upload(pcm_wav(tone(8000, 4.0), 8000))
    assert status == 413
    error = assert_error(body, "body_too_large")
    assert error["message_en"] == "the upload must not exceed 64 KiB"
    server.api.max_body_bytes = 1024 * 1024
    server.api.max_duration_seconds = 60
    status, body, _ = yield server.upload(pcm_wav(array("h", bytes(2 * 8000 * 61)), 8000))
    assert status == 413
    assert_error(body, "audio_too_long")
    yield server.assert_nothing_kept()


BAD_QUERIES = {
    "expires before it is published": ({"publish_at": "2026-12-08T10:00", "expires_at": "2026-12-08T09:00"},
                                       "expires_at", "invalid_field"),
    "expires when it is published": ({"publish_at": "2026-12-08T10:00", "expires_at": "2026-12-08T10:00+08:00"},
                                     "expires_at", "invalid_field"),
    "has expired already": ({"expires_at": "2026-12-07T19:00+08:00"}, "expires_at", "invalid_field"),
    "not a time": ({"publish_at": "tomorrow"}, "publish_at", "invalid_field"),
    "no such day": ({"publish_at": "2026-02-30T10:00"}, "publish_at", "invalid_field"),
    "no category": ({"category": None}, "category", "missing_field"),
    "no such category": ({"category": "7"}, "category", "unknown_category"),
    "unknown parameter": ({"expire_at": "2026-12-08T10:00"}, "expire_at", "unknown_field"),
    "a title too long": ({"title": "长" * 129}, "title", "invalid_field"),
}


@pytest.mark.parametrize("name", BAD_QUERIES)
@pytest_twisted.inlineCallbacks
def test_bad_metadata_is_400_and_nothing_kept(server, name):
    given, field, code = BAD_QUERIES[name]
    params = {k: v for k, v in {"category": "1", **given}.items() if v is not None}
    status, body, _ = yield server.request("POST", params=params, body=SPEECH)
    assert status == 400
    assert_error(body, code, field)
    yield server.assert_nothing_kept()


@pytest_twisted.inlineCallbacks
def test_a_row_that_cannot_be_written_takes_its_file_with_it(server, monkeypatch):
    def broken(connection, **values):
        raise RuntimeError("the disk of the database is full")

    monkeypatch.setattr(b, "add_bulletin", broken)
    status, body, _ = yield server.upload()
    assert status == 500
    assert_error(body, "internal_error")
    yield server.assert_nothing_kept()


@pytest_twisted.inlineCallbacks
def test_a_conversion_that_hangs_is_killed_and_nothing_kept(server, converter, clock):
    converter.command = HANGS
    started = defer.Deferred()
    convert = converter.convert

    def watched(upload):
        d = convert(upload)
        started.callback(None)
        return d

    converter.convert = watched
    answer = server.upload()
    yield started
    clock.advance(converter.timeout)
    status, body, response = yield answer
    assert status == 503
    assert_error(body, "conversion_timeout")
    assert response.headers.getRawHeaders("Retry-After") == ["60"]
    yield server.assert_nothing_kept()


@pytest_twisted.inlineCallbacks
def test_a_client_going_away_cancels_the_conversion_and_nothing_is_kept(server, converter):
    converter.command = HANGS
    started, settled = defer.Deferred(), defer.Deferred()
    convert = converter.convert

    def watched(upload):
        d = convert(upload)

        def seen(result):
            settled.callback(isinstance(result, Failure) and result.check(defer.CancelledError))
            return result

        started.callback(None)
        return d.addBoth(seen)

    converter.convert = watched
    answer = server.upload()
    yield started
    answer.cancel()
    with pytest.raises(Exception):
        yield answer
    assert (yield settled) is defer.CancelledError
    yield server.assert_nothing_kept()


# -- the converter


@pytest_twisted.inlineCallbacks
def test_the_converter_queues_then_refuses_and_a_cancel_kills_the_child(clock):
    converter = ProcessConverter(reactor, clock, running=1, waiting=1, command=HANGS)
    running = converter.convert(SPEECH)
    waiting = converter.convert(SPEECH)
    with pytest.raises(ConverterBusy):
        yield converter.convert(SPEECH)
    running.cancel()
    with pytest.raises(defer.CancelledError):
        yield running
    # The waiting one has the slot now; cancelled, it frees it.
    waiting.cancel()
    with pytest.raises(defer.CancelledError):
        yield waiting
    converter.command = [sys.executable, "-m", "callcenter.ivr.upload_audio"]
    converted = yield converter.convert(SPEECH)
    assert converted[:4] == b"RIFF"


@pytest_twisted.inlineCallbacks
def test_a_refusal_by_the_child_is_an_audio_refusal(clock):
    converter = ProcessConverter(reactor, clock)
    with pytest.raises(upload_audio.AudioRefused) as refused:
        yield converter.convert(pcm_wav(array("h", bytes(1600)), 8000))
    assert (refused.value.status, refused.value.code) == (400, "silent_audio")


# -- the data layer's withdrawal


def test_expiring_keeps_history_on_either_backend(database):
    database.transaction(b.add_category, "1", "个股点评", "Share commentary")
    current = database.transaction(b.add_bulletin, "1", "a.wav", 1000, NOON - HOUR)
    later = database.transaction(b.add_bulletin, "1", "b.wav", 1000, NOON + HOUR, expire_at=NOON + 2 * HOUR)
    gone = database.transaction(b.add_bulletin, "1", "c.wav", 1000, NOON - 2 * HOUR, expire_at=NOON - HOUR)
    assert [x.id for x in database.transaction(b.unexpired_bulletins, NOON)] == [later, current]
    assert database.transaction(b.expire_bulletin, current, NOON).expire_at == NOON
    assert database.transaction(b.expire_bulletin, later, NOON).expire_at == NOON + HOUR
    assert database.transaction(b.expire_bulletin, gone, NOON).expire_at == NOON - HOUR
    assert database.transaction(b.expire_bulletin, 999, NOON) is None
    assert database.transaction(b.unexpired_bulletins, NOON) == []
    assert database.transaction(b.bulletin, current).audio_path == "a.wav"


# -- the audio conversion on its own


def test_resampling_in_blocks_gives_what_resampling_at_once_does():
    samples = tone(44100, 0.3, frequency=2500, lead=0.01)
    for rate in (44100, 48000, 11025, 16000):
        whole = resample(list(samples), rate)
        blocks = upload_audio.resample_long(samples, rate, block=1000)
        assert len(blocks) == len(whole)
        assert max(abs(x - y) for x, y in zip(blocks, whole)) < 1e-6


def test_the_child_process_entry_point():
    out = io.BytesIO()
    assert upload_audio.main(io.BytesIO(SPEECH), out) == 0
    assert out.getvalue()[:4] == b"RIFF"
    out = io.BytesIO()
    assert upload_audio.main(io.BytesIO(b"not a wav"), out) == 2
    assert b'"not_wav"' in out.getvalue()


def test_a_header_saying_more_than_the_file_holds_is_read_to_its_end():
    # A streaming writer leaves the data size at 0xFFFFFFFF.
    upload = bytearray(SPEECH)
    upload[40:44] = b"\xff\xff\xff\xff"
    info = upload_audio.inspect(bytes(upload))
    assert (info.encoding, info.channels, info.rate, info.frames) == ("pcm16", 1, 8000, 12800)
