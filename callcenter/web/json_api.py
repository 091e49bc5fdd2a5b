"""
What the JSON APIs under C{/api/v1/} share, so that investors' trading
(L{callcenter.trading.api}) and editors' bulletins
(L{callcenter.ivr.bulletins_api}) answer alike: every error a JSON body
with a code, a message in Mandarin and in English (the one the client
prefers first) and the request's correlation id; query parameters and
bodies refused the same way, with the same codes; times in China Standard
Time.  docs/api.md documents the conventions once for both.

The API classes are Klein apps holding their state (C{app = Klein()} on
the class); L{handle_errors_as_json} gives such an app the error handlers
every API needs.
"""

import datetime
import io
import json
import re
from dataclasses import dataclass

from twisted.web.resource import Resource
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from callcenter.log import new_correlation_id

__all__ = [
    "CST",
    "ROW_ID",
    "APIError",
    "AtThePrefixToo",
    "Field",
    "bad_field",
    "choice",
    "client_host",
    "correlation_id",
    "error_response",
    "handle_errors_as_json",
    "header",
    "integer",
    "iso_time",
    "json_response",
    "prefers_english",
    "query",
    "read_body",
    "read_json",
    "text",
]

CST = datetime.timezone(datetime.timedelta(hours=8), "CST")

# A path segment naming a row by its integer key: the keys are 32-bit on
# PostgreSQL, so a larger number is a 404, not a database error.
ROW_ID = "int(max=2147483647)"


class APIError(Exception):
    """A request the API itself refuses (bad input, no credentials, ...), with its answer."""

    def __init__(self, status, code, zh, en, field=None, headers=None):
        super().__init__(code)
        self.status = status
        self.code = code
        self.zh = zh
        self.en = en
        self.field = field
        self.headers = headers or {}


def bad_field(field, zh, en, code="invalid_field", status=400):
    """The refusal of a field (of a body, or a query parameter) by its name."""
    return APIError(status, code, f"{field}：{zh}", f"{field}: {en}", field=field)


# -- requests


def header(request, name):
    """A request header as text, or None.  Decoded as Latin-1 (RFC 9110 §5.5): any bytes, no exception."""
    value = request.getHeader(name)
    return None if value is None else value.decode("latin-1")


def client_host(request):
    """The address the request came from, for the log; None when it has none (a test)."""
    return getattr(request.getClientAddress(), "host", None)


def correlation_id(request):
    """
    The request's correlation id, which its log lines and its error body
    carry: set by L{callcenter.web.site.CorrelatedSite}, or made here when
    the API is served without it (a test, an embedding).
    """
    cid = getattr(request, "correlation_id", None)
    if cid is None:
        cid = request.correlation_id = new_correlation_id()
    return cid


def query(request, allowed):
    """
    The query parameters (UTF-8 text), refusing unknown, repeated or
    undecodable ones: a parameter misspelt is a mistake to tell, not an
    option to ignore.
    """
    values = {}
    for raw_name, raw_values in request.args.items():
        name = raw_name.decode("utf-8", "replace")
        if name not in allowed:
            raise bad_field(name, "未知查询参数", "unknown query parameter", code="unknown_field")
        if len(raw_values) != 1:
            raise bad_field(name, "只能给一次", "must be given once")
        try:
            values[name] = raw_values[0].decode("utf-8")
        except UnicodeDecodeError:
            raise bad_field(name, "应为 UTF-8 文本", "must be UTF-8 text")
    return values


def _size(octets):
    return f"{octets // 2**20} MiB" if octets >= 2**20 else f"{octets // 2**10} KiB"


def read_body(request, max_bytes, what_zh="请求体", what_en="the body"):
    """
    The request's body, refused with 413 when longer than C{max_bytes}:
    by its Content-Length before anything is read, then by what came.
    C{what_zh} and C{what_en} name it in the refusal.
    """

    def too_large():
        size = _size(max_bytes)
        return APIError(413, "body_too_large", f"{what_zh}不能超过 {size}", f"{what_en} must not exceed {size}")

    length = header(request, b"content-length")
    # ASCII digits only: int() takes other scripts' digits too.
    if length is not None and re.fullmatch(r"[0-9]+", length.strip()) and int(length) > max_bytes:
        raise too_large()
    content = request.content
    content.seek(0, io.SEEK_END)
    if content.tell() > max_bytes:
        raise too_large()
    content.seek(0)
    return content.read()


@dataclass(frozen=True)
class Field:
    """A field of a JSON body: C{check(name, value)} gives the value to use or raises L{APIError}."""

    name: str
    check: object
    required: bool = True
    default: object = None


def text(max_length, pattern=None, what_zh="", what_en=""):
    """A check of a string of 1 to C{max_length} characters, matching C{pattern} (described by C{what_*})."""

    def check(name, value):
        if not isinstance(value, str):
            raise bad_field(name, "应为字符串", "must be a string")
        if not value or len(value) > max_length:
            raise bad_field(name, f"长度应为 1 到 {max_length} 个字符", f"must be 1 to {max_length} characters")
        if pattern is not None and not pattern.fullmatch(value):
            raise bad_field(name, f"应为{what_zh}", f"must be {what_en}")
        return value

    return check


def integer(minimum, maximum, unit_zh="", unit_en=""):
    """A check of an integer from C{minimum} to C{maximum}."""

    def check(name, value):
        # bool is an int to Python, never to a client; a float is refused
        # even when whole, so that money never travels as a float.
        if type(value) is not int:
            raise bad_field(name, f"应为整数{unit_zh}", f"must be an integer{unit_en}")
        if not minimum <= value <= maximum:
            raise bad_field(name, f"应在 {minimum} 到 {maximum} 之间", f"must be from {minimum} to {maximum}")
        return value

    return check


def choice(*choices):
    """A check of one of C{choices}."""

    def check(name, value):
        if value not in choices:
            listed = ", ".join(f'"{c}"' for c in choices)
            raise bad_field(name, f"应为 {listed} 之一", f"must be one of {listed}")
        return value

    return check


def _reject_duplicate_keys(pairs):
    # A key given twice would otherwise mean its last value, silently.
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def _no_constants(name):
    raise ValueError(f"{name} is not JSON")


def read_json(request, fields, max_bytes):
    """
    The JSON object in the request's body (UTF-8, at most C{max_bytes}),
    checked against C{fields} (L{Field}s), defaults filled in.  Unknown
    fields are refused, like unknown query parameters.
    """
    content_type = (header(request, b"content-type") or "").lower()
    media_type, _, parameters = content_type.partition(";")
    charset = parameters.strip().replace(" ", "")
    if media_type.strip() != "application/json" or charset not in ("", "charset=utf-8", 'charset="utf-8"'):
        raise APIError(415, "unsupported_media_type", "请求体应为 JSON（Content-Type: application/json，UTF-8）",
                       "the body must be JSON (Content-Type: application/json, UTF-8)")
    raw = read_body(request, max_bytes)
    try:
        body = json.loads(raw.decode("utf-8"), object_pairs_hook=_reject_duplicate_keys, parse_constant=_no_constants)
    except ValueError as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise APIError(400, "invalid_json", "请求体不是有效的 UTF-8 JSON", f"the body is not valid UTF-8 JSON: {e}")
    if not isinstance(body, dict):
        raise APIError(400, "invalid_json", "请求体应为 JSON 对象", "the body must be a JSON object")
    known = {f.name for f in fields}
    for name in body:
        if name not in known:
            raise bad_field(name, "未知字段", "unknown field", code="unknown_field")
    checked = {}
    for f in fields:
        if f.name in body:
            checked[f.name] = f.check(f.name, body[f.name])
        elif f.required:
            raise bad_field(f.name, "缺少必填字段", "is required", code="missing_field")
        else:
            checked[f.name] = f.default
    return checked


# -- responses


def iso_time(value):
    """
    A datetime as ISO 8601 in China Standard Time; None stays None.  A
    naive one is taken as China time: SQLite keeps no offset, and the
    trading subsystem writes its times with the trading clock, in China time.
    """
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=CST)
    return value.astimezone(CST).isoformat()


def prefers_english(request):
    """Accept-Language (RFC 9110 §12.5.4): English when it ranks above Chinese."""
    best = {"zh": -1.0, "en": -1.0}
    for item in (header(request, b"accept-language") or "").split(","):
        tag, _, parameters = item.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        if primary not in best:
            continue
        quality = 1.0
        parameter = parameters.strip().replace(" ", "")
        if parameter.startswith("q="):
            try:
                quality = float(parameter[2:])
            except ValueError:
                continue
        best[primary] = max(best[primary], quality)
    return best["en"] > best["zh"]


def json_response(request, status, body):
    """C{body} as the response, UTF-8 JSON with Chinese as it is; never cached (it is someone's data)."""
    request.setResponseCode(status)
    request.setHeader("Content-Type", "application/json; charset=utf-8")
    request.setHeader("Cache-Control", "no-store")
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def error_response(request, status, code, zh, en, field=None, details=None):
    """
    An error as every API answers one: C{{"error": {...}}} with its code,
    both messages (the client's preferred language first, for clients that
    show the first), the field at fault, C{details} (JSON values) and the
    correlation id to quote to support.
    """
    messages = {"message_en": en, "message_zh": zh} if prefers_english(request) else \
        {"message_zh": zh, "message_en": en}
    error = {"code": code, **messages}
    if field is not None:
        error["field"] = field
    if details:
        error["details"] = details
    error["correlation_id"] = correlation_id(request)
    return json_response(request, status, {"error": error})


# Klein calls an app's handlers in the order they were added, the first
# whose exception matches; these take the API instance first, as the
# handlers of a Klein app on a class do.


def _api_error(api, request, failure):
    error = failure.value
    for name, value in error.headers.items():
        request.setHeader(name, value)
    return error_response(request, error.status, error.code, error.zh, error.en, error.field)


def _no_route(api, request, failure):
    return error_response(request, 404, "not_found", "没有这个接口", "no such endpoint")


def _wrong_method(api, request, failure):
    allowed = failure.value.valid_methods or []
    request.setHeader("Allow", ", ".join(allowed))
    return error_response(request, 405, "method_not_allowed", f"此接口只接受 {', '.join(allowed)}",
                          f"this endpoint accepts only {', '.join(allowed)}")


def _http_error(api, request, failure):
    status = failure.value.code or 400
    return error_response(request, status, f"http_{status}", "请求无法处理", "the request cannot be handled")


def _unexpected(api, request, failure):
    cid = correlation_id(request)
    api.log.failure("API {method} {path} failed", failure, method=request.method.decode("ascii", "replace"),
                    path=request.path.decode("ascii", "replace"), cid=cid)
    return error_response(request, 500, "internal_error", f"服务器内部错误，请联系客服并提供编号 {cid}",
                          f"internal error: quote {cid} to support")


def handle_errors_as_json(app):
    """
    Give the Klein C{app} (a class attribute; the class has a C{log}) the
    handlers that answer L{APIError}, a path with no route, a wrong method
    and werkzeug's other HTTP errors in JSON, and anything else with a 500
    whose correlation id is logged with the failure.  Call it after adding
    the app's own handlers: the last one added here takes every exception.
    """
    app.handle_errors(APIError)(_api_error)
    app.handle_errors(NotFound)(_no_route)
    app.handle_errors(MethodNotAllowed)(_wrong_method)
    app.handle_errors(HTTPException)(_http_error)
    app.handle_errors(_unexpected)


class AtThePrefixToo(Resource):
    """
    A Klein app's resource, answering at the prefix itself too: werkzeug
    would redirect C{/api/v1/bulletins} to C{/api/v1/bulletins/}, a detour
    curl does not take on a POST unless told to.
    """

    isLeaf = True

    def __init__(self, app_resource):
        super().__init__()
        self._app_resource = app_resource

    def render(self, request):
        if not request.postpath:
            request.postpath = [b""]
        return self._app_resource.render(request)
