"""The HTTP site on a real socket: correlation ids and the access log."""

import re

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.web.resource import Resource

from callcenter.web.site import CorrelatedSite
from outcomes import CapturedLog


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request):
        return f"cid={request.correlation_id}".encode()


@pytest.fixture
def site_url():
    port = reactor.listenTCP(0, CorrelatedSite(Hello()), interface="127.0.0.1")
    yield f"http://127.0.0.1:{port.getHost().port}"
    pytest_twisted.blockon(port.stopListening())


@pytest_twisted.inlineCallbacks
def test_each_request_gets_a_correlation_id_seen_by_the_handler_and_the_log(site_url):
    with CapturedLog() as logged:
        response = yield treq.get(site_url + "/x?y=1")
        body = yield response.text()
    [cid] = response.headers.getRawHeaders("X-Request-Id")
    assert re.fullmatch(r"[0-9a-f]{16}", cid)
    assert body == f"cid={cid}"
    [access] = [e for e in logged if e.get("log_namespace") == "callcenter.web.access"]
    assert (access["cid"], access["method"], access["uri"], access["code"]) == (cid, "GET", "/x?y=1", 200)


@pytest_twisted.inlineCallbacks
def test_a_callers_request_id_is_kept(site_url):
    response = yield treq.get(site_url, headers={"X-Request-Id": "portal-42.a_b"})
    assert response.headers.getRawHeaders("X-Request-Id") == ["portal-42.a_b"]
    yield response.text()


@pytest.mark.parametrize("given", ["two words", "x" * 65, "a;b", "中文"])
@pytest_twisted.inlineCallbacks
def test_an_unsafe_request_id_is_replaced(site_url, given):
    response = yield treq.get(site_url, headers={"X-Request-Id": given.encode("utf-8")})
    [cid] = response.headers.getRawHeaders("X-Request-Id")
    assert re.fullmatch(r"[0-9a-f]{16}", cid)
    yield response.text()
