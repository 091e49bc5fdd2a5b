"""
The voice information service's HTTP API under C{/api/v1/bulletins}:
editors list the categories and their bulletins, upload a bulletin
recorded elsewhere (a WAV as the request's body, its category and times in
the query) and take one off the air.  docs/api.md is its reference.

Editors authenticate with HTTP Basic (RFC 7617): their editor id and the
PIN they key by phone, checked by the same L{Credentials}, so a wrong PIN
here counts toward the same lockout.  Put a TLS-terminating proxy in
front: Basic sends the PIN with every request.

An upload becomes what the phone side plays (L{callcenter.ivr.upload_audio},
in a child process) and is stored like a phone recording: a file at a
L{new_recording} path, written whole under a temporary name and renamed,
then its row.  A refused or failed upload leaves neither; a row is never
written without its file, and the file is removed if the row cannot be.
"""

import base64
import binascii
import datetime
import json
import os
import re
import sys

from klein import Klein
from twisted.internet import defer
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from callcenter.interfaces import IWebAPI
from callcenter.ivr import bulletins as data
from callcenter.ivr.bulletins import Credentials, PinCheck
from callcenter.ivr.upload_audio import MAX_DURATION_SECONDS, AudioRefused, inspect
from callcenter.store.schema import bulletins as bulletins_table
from callcenter.web.json_api import (
    CST, ROW_ID, APIError, AtThePrefixToo, bad_field, client_host, correlation_id, error_response,
    handle_errors_as_json, header, iso_time, json_response, query, read_body,
)

__all__ = ["MAX_BODY_BYTES", "BulletinsAPI", "ProcessConverter", "bulletins_api"]

# Five minutes of 48 kHz stereo 16-bit PCM (57.6 MB), with room for the
# metadata chunks editors' tools add.
MAX_BODY_BYTES = 64 * 1024 * 1024
# Five minutes at 48 kHz take about 35 s of one core.
CONVERSION_TIMEOUT = 180.0

_WAV_TYPES = ("audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave")
# RFC 7617 §2: "Basic" then token68.
_BASIC = re.compile(r"Basic +([A-Za-z0-9+/]+=*)", re.IGNORECASE | re.ASCII)
_REALM = 'Basic realm="callcenter bulletins", charset="UTF-8"'
_MAX_PIN = 64
_TITLE_LENGTH = bulletins_table.c.title.type.length
# ISO 8601, date and time; seconds, fraction and offset optional.  A "+"
# in a query string is a space once decoded (application/x-www-form-
# urlencoded): a space before the offset is taken for the "+" it was.
_MOMENT = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?)(Z|[+ -][0-9]{2}:[0-9]{2})?",
    re.ASCII,
)


_log = Logger()


def _credentials_required(code="credentials_required", zh="请提供编辑工号和密码（HTTP Basic）",
                          en="this needs an editor id and PIN (HTTP Basic authentication)"):
    return APIError(401, code, zh, en, headers={"WWW-Authenticate": _REALM})


def _wrong_pin():
    return _credentials_required("wrong_pin", "编辑工号或密码错误", "wrong editor id or PIN")


def _bulletin_not_found():
    return APIError(404, "bulletin_not_found", "没有这条声讯", "no such bulletin")


class ConverterBusy(Exception):
    """Too many uploads are waiting for their conversion."""


class ConversionFailed(Exception):
    """The conversion went wrong: a bug or a resource, not the upload."""


class ConversionTimedOut(ConversionFailed):
    pass


# -- the conversion, in child processes


class _Conversion(ProcessProtocol):
    """One child: the upload to its standard input, what it answers kept, within C{max_output} bytes."""

    def __init__(self, upload, max_output, ended):
        self._upload = upload
        self._max_output = max_output
        self.ended = ended
        self.output = []
        self.output_size = 0
        self.errors = b""
        self.overflowed = False
        self.timed_out = False

    def connectionMade(self):
        upload, self._upload = self._upload, None
        self.transport.write(upload)
        self.transport.closeStdin()

    def outReceived(self, data):
        self.output_size += len(data)
        if self.output_size > self._max_output:
            self.overflowed = True
            self.kill()
        else:
            self.output.append(data)

    def errReceived(self, data):
        self.errors = (self.errors + data)[-4096:]

    def kill(self):
        try:
            self.transport.signalProcess("KILL")
        except ProcessExitedAlready:
            pass

    def processEnded(self, reason):
        self.ended.callback(reason.value)


class ProcessConverter:
    """
    Converts uploads with C{python -m callcenter.ivr.upload_audio}: seconds
    of pure Python, in a process of its own so that the reactor, carrying
    the calls' media, never waits for the GIL behind it.  At most
    C{running} children at a time, C{waiting} uploads queued behind them
    (more are refused with L{ConverterBusy}); a child is killed after
    C{timeout} seconds of C{clock}, or when its upload is cancelled (the
    client went away).

    @param command: the child's argv, for tests.
    """

    def __init__(self, reactor, clock, timeout=CONVERSION_TIMEOUT, running=1, waiting=2, command=None,
                 max_output=MAX_DURATION_SECONDS * 8000 * 2 + 1024):
        self._reactor = reactor
        self._clock = clock
        self.timeout = timeout
        self._slots = defer.DeferredSemaphore(running)
        self._max_waiting = waiting
        self.command = command or [sys.executable, "-m", "callcenter.ivr.upload_audio"]
        self._max_output = max_output

    def convert(self, upload):
        """Fires with the converted WAV's bytes, or fails with L{AudioRefused} or L{ConversionFailed}."""
        if self._slots.tokens == 0 and len(self._slots.waiting) >= self._max_waiting:
            return defer.fail(ConverterBusy())
        return self._slots.run(self._convert, upload)

    def _convert(self, upload):
        ended = defer.Deferred()
        child = _Conversion(upload, self._max_output, ended)
        self._reactor.spawnProcess(child, self.command[0], self.command, env=dict(os.environ))

        def timed_out():
            child.timed_out = True
            child.kill()

        timer = self._clock.callLater(self.timeout, timed_out)

        def cancel(_):
            if timer.active():
                timer.cancel()
            child.kill()

        result = defer.Deferred(cancel)

        def finished(reason):
            if timer.active():
                timer.cancel()
            if result.called:  # cancelled: nobody is waiting
                return
            try:
                result.callback(self._outcome(child, reason))
            except Exception:
                result.errback()

        ended.addCallback(finished)
        return result

    def _outcome(self, child, reason):
        if child.timed_out:
            raise ConversionTimedOut(f"the conversion took more than {self.timeout} s")
        if child.overflowed:
            raise ConversionFailed(f"the conversion wrote more than {self._max_output} bytes")
        output = b"".join(child.output)
        if isinstance(reason, ProcessDone):
            return output
        if getattr(reason, "exitCode", None) == 2:
            refused = json.loads(output.decode("utf-8"))
            raise AudioRefused(refused["status"], refused["code"], refused["zh"], refused["en"])
        errors = child.errors.decode("utf-8", "replace").strip().splitlines()
        raise ConversionFailed(f"{reason}: {errors[-1] if errors else 'nothing on stderr'}")


def _shielded(d):
    """
    What C{d} gives, C{d} going on if the request is cancelled (the client
    went away): a file and its row are better finished, or undone, than
    abandoned halfway.
    """
    outcome = defer.Deferred()

    def arrived(result):
        if not outcome.called:
            (outcome.errback if isinstance(result, Failure) else outcome.callback)(result)
        elif isinstance(result, Failure):
            _log.failure("keeping a bulletin after its request was cancelled failed", result)

    d.addBoth(arrived)
    return outcome


# -- files and rows (blocking: in threads)


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _write_recording(directory, wav, now):
    """Write C{wav} whole at a new bulletin path: (relative, absolute, duration_ms)."""
    relative, absolute = data.new_recording(directory, "bulletins", now)
    partial = absolute + ".part"
    try:
        with open(partial, "wb") as file:
            file.write(wav)
            file.flush()
            os.fsync(file.fileno())
        # Read as the phone side will read it.
        duration_ms = data.recording_duration_ms(partial)
        if duration_ms <= 0:
            raise ConversionFailed(f"{partial}: the converted recording does not play")
        os.replace(partial, absolute)
        # The rename is durable before the row refers to it.
        folder = os.open(os.path.dirname(absolute), os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except BaseException:
        _remove(partial)
        _remove(absolute)
        raise
    return relative, absolute, duration_ms


def _category_access(connection, category, editor_id):
    """(the category exists, the editor may publish in it)."""
    exists = any(c.code == category for c in data.categories(connection))
    return exists, category in data.editor_categories(connection, editor_id)


def _add(connection, **values):
    return data.bulletin(connection, data.add_bulletin(connection, **values))


def _overview(connection, editor_id, now):
    return (data.categories(connection), data.unexpired_bulletins(connection, now),
            set(data.editor_categories(connection, editor_id)))


def _withdraw(connection, bulletin_id, editor_id, now):
    """(the bulletin, or None; whether the editor may withdraw it), expired if allowed."""
    found = data.bulletin(connection, bulletin_id)
    if found is None:
        return None, False
    if found.category not in data.editor_categories(connection, editor_id):
        return found, False
    return data.expire_bulletin(connection, bulletin_id, now), True


# -- requests and responses


def _moment(params, name):
    """The time in parameter C{name} of C{params}, aware; None if not given.  Without an offset it is China time."""
    value = params.get(name)
    if value is None:
        return None
    match = _MOMENT.fullmatch(value.strip())
    try:
        if match is None:
            raise ValueError(value)
        local, offset = match.groups()
        offset = "" if offset is None else offset.replace(" ", "+")
        moment = datetime.datetime.fromisoformat(local + offset)
    except ValueError:
        raise bad_field(name, "应为时间，如 2026-12-01T09:30 或 2026-12-01T09:30+08:00",
                        "must be a time such as 2026-12-01T09:30 or 2026-12-01T09:30+08:00")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=CST)


def _status(bulletin, now):
    # Withdrawn before it was published, it expired when it was to be.
    if bulletin.expire_at is not None and bulletin.expire_at <= max(bulletin.publish_at, now):
        return "expired"
    return "scheduled" if bulletin.publish_at > now else "current"


def _shaped(bulletin, now):
    """What a client sees of a bulletin (its file's path is the server's business)."""
    return {
        "id": bulletin.id,
        "category": bulletin.category,
        "title": bulletin.title,
        "duration_ms": bulletin.duration_ms,
        "recorded_by": bulletin.recorded_by,
        "publish_at": iso_time(bulletin.publish_at),
        "expires_at": iso_time(bulletin.expire_at),
        "status": _status(bulletin, now),
    }


@implementer(IWebAPI)
class BulletinsAPI:
    """
    The bulletins API as a Klein app, served by the web subsystem under
    C{prefix} once provided as an L{IWebAPI}.

    @param store: the L{IStore} of bulletins and editors.
    @param credentials: the L{Credentials} checking editors' PINs.
    @param recordings: the directory of recordings (C{[ivr] recordings}).
    @param converter: C{convert(upload) -> Deferred} of the converted WAV,
        a L{ProcessConverter}.
    @param in_thread: C{in_thread(function, *args) -> Deferred}, for the
        file system's blocking calls.
    @param now: a callable giving the current aware datetime.
    """

    app = Klein()
    log = Logger()
    prefix = "api/v1/bulletins"

    def __init__(self, store, credentials, recordings, converter, in_thread, now, max_body_bytes=MAX_BODY_BYTES,
                 max_duration_seconds=MAX_DURATION_SECONDS):
        self._store = store
        self._credentials = credentials
        self._recordings = recordings
        self._converter = converter
        self._in_thread = in_thread
        self._now = now
        self.max_body_bytes = max_body_bytes
        self.max_duration_seconds = max_duration_seconds
        self._resource = None

    def resource(self):
        if self._resource is None:
            self._resource = AtThePrefixToo(self.app.resource())
        return self._resource

    # -- helpers

    @defer.inlineCallbacks
    def _authenticate(self, request):
        """The editor id of the request's credentials; L{APIError} 401 or 403 otherwise."""
        authorization = header(request, b"authorization")
        match = None if authorization is None else _BASIC.fullmatch(authorization.strip())
        if match is None:
            raise _credentials_required()
        try:
            editor_id, colon, pin = base64.b64decode(match.group(1), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise _credentials_required()
        if not colon:
            raise _credentials_required()
        # Ids are digits keyed on a phone, no longer than the column: any
        # other is no editor, answered like a wrong PIN without a look-up.
        if not (editor_id.isdigit() and editor_id.isascii() and len(editor_id) <= 16) or len(pin) > _MAX_PIN:
            outcome = PinCheck.WRONG
        else:
            outcome = yield self._credentials.check("editor", editor_id, pin)
        if outcome is PinCheck.OK:
            return editor_id
        # The PIN is never logged.
        self.log.info("API editor {editor} refused from {client}: {outcome}", editor=editor_id[:16],
                      client=client_host(request), outcome=outcome.value, cid=correlation_id(request))
        if outcome is PinCheck.LOCKED:
            raise APIError(403, "editor_locked", "该编辑工号已因多次密码错误被锁定，请联系管理员解锁",
                           "this editor id is locked after too many wrong PINs: ask an administrator to unlock it")
        raise _wrong_pin()

    def _check_media_type(self, request):
        """
        A WAV by its Content-Type.  Checked before the query: twisted.web
        takes the fields of a form body (curl's default type, or -F) for
        query parameters.
        """
        media_type = (header(request, b"content-type") or "").partition(";")[0].strip().lower()
        if media_type == "multipart/form-data":
            raise APIError(415, "unsupported_media_type",
                           "请直接以请求体发送 WAV 文件（curl --data-binary @文件.wav），不要用表单上传（-F）",
                           "send the WAV file itself as the body (curl --data-binary @file.wav), not a form (-F)")
        if media_type not in _WAV_TYPES:
            raise APIError(415, "unsupported_media_type", "请求体应为 WAV 音频（Content-Type: audio/wav）",
                           "the body must be a WAV file sent with Content-Type: audio/wav")

    # -- errors: every one is a JSON body

    @app.handle_errors(AudioRefused)
    def _audio_refused(self, request, failure):
        refused = failure.value
        return error_response(request, refused.status, refused.code, refused.zh, refused.en)

    @app.handle_errors(ConverterBusy)
    def _busy(self, request, failure):
        request.setHeader("Retry-After", "60")
        return error_response(request, 503, "converter_busy", "正在处理其他上传，请一分钟后再试",
                              "other uploads are being converted: try again in a minute")

    @app.handle_errors(ConversionTimedOut)
    def _timed_out(self, request, failure):
        self.log.warn("bulletin conversion timed out", cid=correlation_id(request))
        request.setHeader("Retry-After", "60")
        return error_response(request, 503, "conversion_timeout", "音频转换超时，请稍后再试",
                              "converting the audio took too long: try again later")

    handle_errors_as_json(app)

    # -- routes

    @app.route("/", methods=["GET"])
    @defer.inlineCallbacks
    def overview(self, request):
        editor = yield self._authenticate(request)
        query(request, ())
        now = self._now()
        categories, bulletins, allowed = yield self._store.transaction(_overview, editor, now)
        return json_response(request, 200, {"categories": [
            {
                "code": category.code,
                "name_zh": category.name_zh,
                "name_en": category.name_en,
                "may_publish": category.code in allowed,
                "bulletins": [_shaped(b, now) for b in bulletins if b.category == category.code],
            }
            for category in categories
        ]})

    @app.route("/", methods=["POST"])
    @defer.inlineCallbacks
    def upload(self, request):
        editor = yield self._authenticate(request)
        self._check_media_type(request)
        params = query(request, ("category", "publish_at", "expires_at", "title"))
        now = self._now()
        category = params.get("category")
        if category is None:
            raise bad_field("category", "缺少必填参数", "is required", code="missing_field")
        publish_at = _moment(params, "publish_at") or now.replace(microsecond=0)
        expires_at = _moment(params, "expires_at")
        if expires_at is not None and expires_at <= max(publish_at, now):
            raise bad_field("expires_at", "应晚于发布时间和当前时间", "must be after publish_at and after now")
        title = (params.get("title") or "").strip() or None
        if title is not None and len(title) > _TITLE_LENGTH:
            raise bad_field("title", f"不能超过 {_TITLE_LENGTH} 个字符", f"must not exceed {_TITLE_LENGTH} characters")
        exists, allowed = yield self._store.transaction(_category_access, category, editor)
        if not exists:
            raise bad_field("category", "没有这个声讯类别", "no such category", code="unknown_category")
        if not allowed:
            raise APIError(403, "category_not_allowed", f"您不能在类别 {category} 中发布声讯",
                           f"you may not publish in category {category}", field="category")
        upload = read_body(request, self.max_body_bytes, "上传的文件", "the upload")
        source = inspect(upload, self.max_duration_seconds)
        wav = yield self._converter.convert(upload)
        del upload
        bulletin = yield _shielded(self._keep(wav, now, category=category, recorded_by=editor,
                                              publish_at=publish_at, expire_at=expires_at, title=title))
        self.log.info(
            "bulletin {id} ({duration_ms} ms) uploaded to category {category} by editor {editor} from {client}",
            id=bulletin.id, duration_ms=bulletin.duration_ms, category=category, editor=editor,
            client=client_host(request), cid=correlation_id(request),
        )
        request.setHeader("Location", f"/{self.prefix}/{bulletin.id}")
        return json_response(request, 201, {**_shaped(bulletin, now), "source": {
            "encoding": source.encoding,
            "channels": source.channels,
            "sample_rate": source.rate,
            "duration_ms": source.duration_ms,
        }})

    @defer.inlineCallbacks
    def _keep(self, wav, now, **values):
        """The file, then its row; the file removed if the row is not written."""
        relative, absolute, duration_ms = yield self._in_thread(_write_recording, self._recordings, wav, now)
        try:
            bulletin = yield self._store.transaction(_add, audio_path=relative, duration_ms=duration_ms, **values)
        except BaseException:
            _remove(absolute)
            raise
        return bulletin

    @app.route(f"/<{ROW_ID}:bulletin_id>", methods=["GET"])
    @defer.inlineCallbacks
    def one(self, request, bulletin_id):
        yield self._authenticate(request)
        query(request, ())
        found = yield self._store.transaction(data.bulletin, bulletin_id)
        if found is None:
            raise _bulletin_not_found()
        return json_response(request, 200, _shaped(found, self._now()))

    @app.route(f"/<{ROW_ID}:bulletin_id>", methods=["DELETE"])
    @defer.inlineCallbacks
    def withdraw(self, request, bulletin_id):
        editor = yield self._authenticate(request)
        query(request, ())
        now = self._now()
        found, allowed = yield self._store.transaction(_withdraw, bulletin_id, editor, now)
        if found is None:
            raise _bulletin_not_found()
        if not allowed:
            raise APIError(403, "category_not_allowed", f"您不能撤下类别 {found.category} 的声讯",
                           f"you may not withdraw bulletins of category {found.category}")
        self.log.info("bulletin {id} withdrawn by editor {editor} from {client}", id=bulletin_id, editor=editor,
                      client=client_host(request), cid=correlation_id(request))
        return json_response(request, 200, _shaped(found, now))


def bulletins_api(config, context):
    """The API for the IVR subsystem's C{config} (its L{IVRConfig}) and C{context}."""
    from twisted.internet.threads import deferToThreadPool

    reactor, clock = context.reactor, context.clock

    def in_thread(function, *args):
        return deferToThreadPool(reactor, reactor.getThreadPool(), function, *args)

    def now():
        return datetime.datetime.fromtimestamp(clock.seconds(), datetime.timezone.utc)

    return BulletinsAPI(
        context.store, Credentials(context.store, in_thread, now), config.recordings,
        ProcessConverter(reactor, clock), in_thread, now,
    )
