"""
The real server against SIPp (and, for media, a small SIP client of our
own) when calls do not go the easy way: a caller that gives up while the
callee rings, hang-ups from either side of a bridged call, an ACK that never
comes, retransmitted requests, an offer with no codec in common, garbage at
a call's RTP port, a datagram as large as UDP allows.  All on 127.0.0.1.

SIPp's -trace_msg log of each run is read to check what it received; each
SIPp runs in its own directory so that its log is found.
"""

import glob
import os
import random
import re
import secrets
import socket
import struct
import subprocess
import time

import pytest

from postgres import free_port
from processes import DEADLINE, get_json
from telephony_server import bindings

# The store only holds the accounts and registrations these calls use; the
# registrar's storage runs on both backends in test_registrar and test_sipp.
pytestmark = pytest.mark.backend_independent

SCENARIOS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios")


class SIPp:
    """One SIPp run of a scenario in scenarios/, in its own directory under C{tmp_path}."""

    def __init__(self, tmp_path, name, server_port, scenario, *options, local_port=None, final=None, timeout=20):
        self.directory = tmp_path / name
        self.directory.mkdir()
        path = os.path.join(SCENARIOS, scenario)
        if final is not None:
            with open(path) as f:
                text = f.read().replace("FINAL", str(final))
            path = self.directory / scenario
            path.write_text(text)
        self.local_port = local_port or free_port()
        self.process = subprocess.Popen(
            [
                "sipp", f"127.0.0.1:{server_port}", "-sf", str(path), "-m", "1",
                "-i", "127.0.0.1", "-mi", "127.0.0.1", "-bind_local", "-ci", "127.0.0.1", "-nostdin",
                "-cp", str(free_port()), "-p", str(self.local_port),
                "-timeout", str(timeout), "-timeout_error", "-trace_err", "-trace_msg",
                *options,
            ],
            cwd=self.directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait(self, timeout=DEADLINE):
        """SIPp's exit status: 0 when everything went as scripted."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise

    def errors(self):
        return "".join(open(path).read() for path in glob.glob(str(self.directory / "*_errors.log")))

    def received(self):
        """The SIP messages SIPp received, in order, as text."""
        [log] = glob.glob(str(self.directory / "*_messages.log"))
        with open(log) as f:
            entries = re.split(r"^-{20,} .*\n", f.read(), flags=re.M)
        return [
            entry.split("\n", 1)[1].strip("\n")
            for entry in entries
            if re.match(r"\w+ message received", entry)
        ]


def run_sipp(tmp_path, name, server_port, scenario, *options, **keywords):
    sipp = SIPp(tmp_path, name, server_port, scenario, *options, **keywords)
    status = sipp.wait()
    assert status == 0, sipp.errors()
    return sipp


def header(message, name):
    found = re.search(rf"^{name}:[ \t]*(.*)$", message, flags=re.M | re.I)
    return found.group(1).strip() if found else None


def responses(messages, status):
    return [m for m in messages if m.startswith(f"SIP/2.0 {status} ")]


def telephony(server):
    status, health = get_json(server.http, "/health")
    assert status == 200
    return health["subsystems"]["telephony"]


def register_callee(tmp_path, server):
    """
    Register extension 1001 from a SIPp on a port of its own, then free that
    port for the SIPp that plays the phone: the server calls the phone where
    its REGISTER came from.
    """
    registration = run_sipp(
        tmp_path, "register", server.udp, "register.xml", "-s", "1001", "-au", "1001", "-ap", "demo1001", final=200
    )
    return registration.local_port


def call_extension(tmp_path, server, caller_scenario, callee_scenario):
    """
    SIPp as extension 1002 (answering the 407) calls 1001, played by a
    second SIPp registered as it.  Returns (caller, callee), both finished.
    The phone's SIPp may start after the server's INVITE was sent: the
    server retransmits it (Timer A) until it is there.
    """
    phone_port = register_callee(tmp_path, server)
    callee = SIPp(tmp_path, "callee", server.udp, callee_scenario, local_port=phone_port)
    caller = SIPp(
        tmp_path, "caller", server.udp, caller_scenario,
        "-s", "1001", "-au", "1002", "-ap", "demo1002", "-auth_uri", f"1001@127.0.0.1:{server.udp}",
    )
    assert caller.wait() == 0, caller.errors()
    assert callee.wait() == 0, callee.errors()
    return caller, callee


def test_a_caller_who_gives_up_while_the_callee_rings_cancels_both_legs(tmp_path, server):
    """
    CANCEL before the answer, through the B2BUA: the phone rings (180
    relayed to the caller), the caller CANCELs; the caller gets 200 for
    the CANCEL and 487 for its INVITE, and the server CANCELs its own INVITE
    to the phone, which answers 487 and gets the server's ACK (the phone's
    scenario fails without that CANCEL and that ACK).  Both legs end and
    no call is left.
    """
    caller, callee = call_extension(tmp_path, server, "invite_cancelled.xml", "callee_rings.xml")
    received = caller.received()
    assert [header(m, "CSeq") for m in responses(received, 200)] == ["2 CANCEL"]
    assert [header(m, "CSeq") for m in responses(received, 487)] == ["2 INVITE"]
    assert any(m.startswith("CANCEL ") for m in callee.received())
    server.process.wait_for(r"InboundCall.*call ended: cancelled")
    server.process.wait_for(r"OutboundCall.*call ended: 487 Request Terminated")
    assert telephony(server)["calls"] == 0


def test_the_callee_hanging_up_a_bridged_call_hangs_up_the_caller(tmp_path, server):
    """
    BYE from the called phone: the server answers it and sends a BYE of
    its own to the caller, inside the caller's dialog (SIPp's caller
    scenario waits for it and answers 200).
    """
    caller, callee = call_extension(tmp_path, server, "caller_is_hung_up.xml", "callee_hangs_up.xml")
    [bye] = [m for m in caller.received() if m.startswith("BYE ")]
    [answered] = responses(caller.received(), 200)
    # Our dialog's tags, swapped: the BYE is the server's end of the caller's call.
    assert header(bye, "To") == header(answered, "From")
    assert header(bye, "From") == header(answered, "To")
    [ok] = responses(callee.received(), 200)
    assert header(ok, "CSeq") == "1 BYE"
    server.process.wait_for(r"OutboundCall.*call ended: callee hung up")
    server.process.wait_for(r"InboundCall.*call ended: other side hung up")
    assert telephony(server)["calls"] == 0


def test_the_caller_hanging_up_a_bridged_call_hangs_up_the_callee(tmp_path, server):
    """
    BYE from the caller (the uac tests cover it for service numbers; here
    across the bridge): its BYE is answered and the called phone gets a BYE
    from the server, which it answers 200.
    """
    caller, callee = call_extension(tmp_path, server, "caller_hangs_up.xml", "callee_is_hung_up.xml")
    assert [header(m, "CSeq") for m in responses(caller.received(), 200)][-1] == "3 BYE"
    [bye] = [m for m in callee.received() if m.startswith("BYE ")]
    [invite] = [m for m in callee.received() if m.startswith("INVITE ")]
    assert header(bye, "Call-ID") == header(invite, "Call-ID")
    server.process.wait_for(r"InboundCall.*call ended: caller hung up")
    server.process.wait_for(r"OutboundCall.*call ended: caller gone")
    assert telephony(server)["calls"] == 0


def test_a_200_never_acked_is_retransmitted_then_the_call_is_ended_with_a_bye(tmp_path, start_server):
    """
    The ACK lost for good: the server retransmits its 200 (RFC 3261
    §13.3.1.4, T1 doubling up to T2), SIPp sees the same 200 again and
    again, and after 64*T1 the server gives up and ends the call with a BYE
    (SIPp's scenario waits for it).  T1 is set to 0.1 s ([telephony] t1),
    so 64*T1 is 6.4 s rather than 32 s; the media timeout stays above it
    so that it is the missing ACK that ends the call, not the missing RTP.
    """
    server = start_server(t1=0.1, media_timeout=30.0)
    sipp = run_sipp(tmp_path, "caller", server.udp, "invite_no_ack.xml", "-s", "9196", timeout=20)
    received = sipp.received()
    answers = responses(received, 200)
    # 0.1, 0.2, 0.4, 0.8, 1.6, 3.2 s...: T1 doubling up to T2 within 64*T1.
    assert len(answers) >= 5
    assert len(set(answers)) == 1, "each retransmission is the same 200"
    assert received[-1].startswith("BYE ")
    server.process.wait_for(r"no ACK for our 200 OK; hanging up")
    server.process.wait_for(r"call ended: no ACK")
    assert telephony(server)["calls"] == 0


def test_a_retransmitted_invite_makes_no_second_call(tmp_path, start_server):
    """
    The same INVITE twice (same branch): one call.  The second reaches the
    first's transaction (RFC 3261 §17.2.3; Accepted state, RFC 6026 §8.5)
    and is absorbed.  While the call is up /health counts one; the call
    ends on the media timeout (SIPp sends no RTP) with a BYE, and then none
    is left, where a second call would still be waiting for its ACK.
    """
    server = start_server(media_timeout=5.0)
    sipp = SIPp(tmp_path, "caller", server.udp, "invite_twice.xml", "-s", "9196")
    server.process.wait_for(r"answered 9196 from sipp")
    assert telephony(server)["calls"] == 1
    assert sipp.wait() == 0, sipp.errors()
    server.process.wait_for(r"call ended: media timeout")
    assert telephony(server)["calls"] == 0
    assert len(re.findall(r"call from sipp to 9196", server.process.output)) == 1
    assert len(responses(sipp.received(), 200)) == 1


def test_a_retransmitted_register_gets_the_same_answer(tmp_path, server, db_url):
    """
    A REGISTER sent again after its 200 (same branch and CSeq, as a phone
    that lost the 200 retransmits it) is answered from the transaction
    (RFC 3261 §17.2.2): the very same 200, same To tag, not a second
    registration run.
    """
    sipp = run_sipp(
        tmp_path, "phone", server.udp, "register_twice.xml", "-s", "1001", "-au", "1001", "-ap", "demo1001"
    )
    registered = [m for m in responses(sipp.received(), 200) if header(m, "CSeq") == "2 REGISTER"]
    assert len(registered) == 2
    assert registered[0] == registered[1]
    assert [b[0] for b in bindings(db_url)] == ["1001"]


def test_an_offer_with_no_codec_in_common_is_refused_488_with_a_warning(tmp_path, server):
    """
    G.729 only (payload type 18): 488 Not Acceptable Here with a Warning
    (RFC 3261 §21.4.26, code 305 "incompatible media format") saying why;
    SIPp ACKs it and no call is left.
    """
    sipp = run_sipp(tmp_path, "caller", server.udp, "invite_g729.xml", "-s", "9196")
    [refusal] = responses(sipp.received(), 488)
    warning = header(refusal, "Warning")
    assert warning is not None and warning.startswith("305 callcenter ")
    assert "'18'" in warning
    assert telephony(server)["calls"] == 0


def test_final_responses_outside_a_dialog_carry_a_to_tag(tmp_path, server):
    caller = run_sipp(tmp_path, "caller", server.udp, "invite_g729.xml", "-s", "9196")
    ping = run_sipp(tmp_path, "ping", server.udp, "options.xml", "-trace_msg")
    [refusal] = responses(caller.received(), 488)
    [pong] = responses(ping.received(), 200)
    assert "tag=" in header(refusal, "To")
    assert "tag=" in header(pong, "To")


class SIPClient:
    """
    Just enough of a UAC over a real UDP socket to make one call and know
    its RTP port: SIPp does not hand its media back for checking.
    """

    def __init__(self, server_port):
        self.server = ("127.0.0.1", server_port)
        self.sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sip.bind(("127.0.0.1", 0))
        self.sip.settimeout(DEADLINE)
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.rtp.settimeout(DEADLINE)
        self.port = self.sip.getsockname()[1]
        self.call_id = secrets.token_hex(8)
        self.tag = secrets.token_hex(4)
        self.remote_to = None

    def close(self):
        self.sip.close()
        self.rtp.close()

    def _request(self, method, cseq, to, body=b"", extra=""):
        uri = f"sip:9196@127.0.0.1:{self.server[1]}"
        text = (
            f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
            f"Max-Forwards: 70\r\n"
            f"From: <sip:tester@127.0.0.1:{self.port}>;tag={self.tag}\r\n"
            f"To: {to}\r\n"
            f"Call-ID: {self.call_id}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f"Contact: <sip:tester@127.0.0.1:{self.port}>\r\n"
            f"{extra}"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.sip.sendto(text.encode() + body, self.server)

    def _response(self, cseq):
        """The next final response for C{cseq} ("1 INVITE"), skipping provisional ones and others."""
        while True:
            data = self.sip.recv(65535).decode()
            head, _, body = data.partition("\r\n\r\n")
            status = int(head.split(" ", 2)[1])
            if status >= 200 and header(head.replace("\r\n", "\n"), "CSeq") == cseq:
                return status, head.replace("\r\n", "\n"), body

    def invite(self):
        """INVITE, 200, ACK: returns the server's RTP port."""
        sdp = (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {self.rtp.getsockname()[1]} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        ).encode()
        to = f"<sip:9196@127.0.0.1:{self.server[1]}>"
        self._request("INVITE", 1, to, sdp, "Content-Type: application/sdp\r\n")
        status, head, body = self._response("1 INVITE")
        assert status == 200, head
        self.remote_to = header(head, "To")
        self._request("ACK", 1, self.remote_to)
        return int(re.search(r"^m=audio (\d+) ", body, flags=re.M).group(1))

    def bye(self):
        self._request("BYE", 2, self.remote_to)
        return self._response("2 BYE")[0]


def rtp_packet(sequence, payload, ssrc=0x5EED, payload_type=0):
    return struct.pack("!BBHII", 0x80, payload_type, sequence, sequence * 160, ssrc) + payload


def garbage(rng):
    """Random datagrams, and RTP-shaped ones that lie about their own layout."""
    for _ in range(300):
        yield rng.randbytes(rng.randrange(0, 1500))
    for first in (0x8F, 0x90, 0xA0, 0xBF):  # 15 CSRCs, an extension, padding: none really there
        for size in (1, 11, 12, 13, 16, 60):
            yield bytes([first]) + rng.randbytes(size - 1)
    yield b"\x80\x00" + b"\xff" * 10 + b"\x00" * 160  # Our payload type, another SSRC, sequence 65535.
    yield b"\x80\x00" * 32000  # 64,000 octets: far larger than any RTP packet.


def test_garbage_at_a_calls_rtp_port_leaves_the_call_working(tmp_path, server):
    """
    Random bytes, and packets with impossible RTP headers, sent to a live
    call's RTP port (taken from the server's SDP answer) from the caller's
    own RTP address and from a stranger's: the echo test still sends back
    what the caller says afterwards, the call ends normally with BYE and
    200, and the server logged no traceback.
    """
    client = SIPClient(server.udp)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        media_port = client.invite()
        rng = random.Random(4475)
        for datagram in garbage(rng):
            for sender in (client.rtp, stranger):
                try:
                    sender.sendto(datagram, ("127.0.0.1", media_port))
                except OSError:
                    pass  # Too large for a datagram: nothing was sent.
        said = [bytes([0x10 + n % 64]) * 160 for n in range(100)]
        echoed = set()
        deadline = time.monotonic() + DEADLINE
        sequence = 1000
        # Real-time pacing, one packet per 20 ms as a phone sends, until the
        # echo comes back (bounded by the deadline, not a threshold).
        while len(echoed) < 10 and time.monotonic() < deadline:
            client.rtp.sendto(rtp_packet(sequence, said[sequence % 100]), ("127.0.0.1", media_port))
            sequence += 1
            client.rtp.settimeout(0.02)
            try:
                while True:
                    data, source = client.rtp.recvfrom(2048)
                    if source == ("127.0.0.1", media_port) and data[12:] in said:
                        echoed.add(data[12:])
            except socket.timeout:
                pass
        assert len(echoed) >= 10, "the echo stopped"
        client.rtp.settimeout(DEADLINE)
        assert client.bye() == 200
    finally:
        client.close()
        stranger.close()
    server.process.wait_for(r"call ended: caller hung up")
    assert "Traceback" not in server.process.output
    assert telephony(server)["calls"] == 0


def test_a_datagram_as_large_as_udp_allows_is_handled_whole(tmp_path, server):
    """
    A 65,000-octet INVITE (a 64 KB header before its SDP): the SIP socket
    reads datagrams up to 65,535 octets, so it is parsed whole, not cut off:
    the call is answered (the SDP after the header was read) and hangs up
    cleanly.  The same size with a malformed header is answered 400 and
    logged.  The server stays healthy.
    """
    client = SIPClient(server.udp)
    try:
        padding = "X-Padding: " + "a" * 64000 + "\r\n"
        sdp = (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {client.rtp.getsockname()[1]} RTP/AVP 0\r\n"
        ).encode()
        to = f"<sip:9196@127.0.0.1:{server.udp}>"
        client._request("INVITE", 1, to, sdp, "Content-Type: application/sdp\r\n" + padding)
        status, head, body = client._response("1 INVITE")
        assert status == 200, head
        assert "m=audio " in body
        client.remote_to = header(head, "To")
        client._request("ACK", 1, client.remote_to)
        assert client.bye() == 200

        client.call_id = secrets.token_hex(8)
        client._request("INVITE", 1, to, b"", "X-Padding " + "a" * 64900 + "\r\n")
        status, head, _ = client._response("1 INVITE")
        assert status == 400, head
    finally:
        client.close()
    server.process.wait_for(r"malformed SIP from udp:127\.0\.0\.1:\d+: Bad Request - Malformed header line")
    health = telephony(server)
    assert (health["state"], health["calls"]) == ("ok", 0)


def test_a_phone_that_rings_unanswered_past_the_ring_timeout_gives_the_caller_480(tmp_path, start_server):
    """
    Nobody picks up: after [telephony] ring_timeout the server CANCELs its
    INVITE to the ringing phone (which answers 200 and 487, as the phone's
    scenario requires) and refuses the caller's INVITE with 480.
    """
    server = start_server(ring_timeout=5)
    phone_port = register_callee(tmp_path, server)
    callee = SIPp(tmp_path, "callee", server.udp, "callee_rings.xml", local_port=phone_port)
    caller = SIPp(
        tmp_path, "caller", server.udp, "invite_authenticated.xml",
        "-s", "1001", "-au", "1002", "-ap", "demo1002", "-auth_uri", f"1001@127.0.0.1:{server.udp}",
        final=480,
    )
    assert caller.wait() == 0, caller.errors()
    assert callee.wait() == 0, callee.errors()
    server.process.wait_for(r"no answer within 5 s")
    assert telephony(server)["calls"] == 0
