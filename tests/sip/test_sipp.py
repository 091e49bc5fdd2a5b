"""
The telephony subsystem in the real server process, against SIPp (Debian
sip-tester), an independent SIP implementation, over real sockets.
"""

import os
import random
import socket
import subprocess

from postgres import free_port
from processes import DEADLINE, get_json, get_text
from telephony_server import bindings

SIPP_MEDIA = "/usr/share/sip-tester"
SCENARIOS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios")


def sipp(tmp_path, port, scenario, *options, transport="u1", final=None):
    """
    Run one SIPp call of C{scenario} (a file in scenarios/, or "builtin:NAME"
    for one of SIPp's own); returns its exit status (0: all went as scripted).
    """
    if scenario.startswith("builtin:"):
        scenario_options = ["-sn", scenario.split(":", 1)[1]]
        # uac_pcap plays pcap/g711a.pcap, relative to where SIPp runs.
        if not (tmp_path / "pcap").exists():
            (tmp_path / "pcap").symlink_to(SIPP_MEDIA)
    else:
        scenario_options = ["-sf", os.path.join(SCENARIOS, scenario)]
    if final is not None:
        path = os.path.join(SCENARIOS, scenario)
        with open(path) as f:
            text = f.read().replace("FINAL", str(final))
        path = tmp_path / f"{final}-{scenario}"
        path.write_text(text)
        scenario_options = ["-sf", str(path)]
    command = [
        "sipp", f"127.0.0.1:{port}", *scenario_options, "-m", "1",
        "-i", "127.0.0.1", "-mi", "127.0.0.1", "-bind_local", "-ci", "127.0.0.1", "-nostdin",
        "-p", str(free_port()), "-t", transport,
        "-timeout", "20", "-timeout_error", "-trace_err",
        *options,
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=DEADLINE)
    return result.returncode


def test_sipp_registers_over_udp_with_digest_and_the_binding_is_stored(tmp_path, server, db_url):
    status = sipp(tmp_path, server.udp, "register.xml", "-s", "1001", "-au", "1001", "-ap", "demo1001", final=200)
    assert status == 0
    [(aor, contact, agent)] = bindings(db_url)
    assert (aor, agent) == ("1001", "SIPp")
    assert contact.startswith("sip:1001@127.0.0.1:")
    metrics = get_text(server.http, "/metrics")[2]
    assert "callcenter_sip_registrations 1.0" in metrics
    assert "callcenter_calls 0.0" in metrics


def test_sipp_registers_over_tcp(tmp_path, server, db_url):
    status = sipp(
        tmp_path, server.tcp, "register.xml", "-s", "1002", "-au", "1002", "-ap", "demo1002",
        transport="t1", final=200,
    )
    assert status == 0
    assert [b[0] for b in bindings(db_url)] == ["1002"]


def test_a_wrong_password_is_refused_and_a_scanner_gets_blocked(tmp_path, server, db_url):
    for _ in range(5):
        status = sipp(tmp_path, server.udp, "register.xml", "-s", "1001", "-au", "1001", "-ap", "guess", final=403)
        assert status == 0
    status, health = get_json(server.http, "/health")
    assert health["subsystems"]["telephony"]["blocked_sources"] == 1
    assert bindings(db_url) == []
    server.process.wait_for(r"blocking udp:127\.0\.0\.1:\d+: repeated authentication failures")


def test_options_ping_is_answered(tmp_path, server):
    assert sipp(tmp_path, server.udp, "options.xml") == 0


def test_sipp_calls_the_echo_test_with_rtp_audio_and_hangs_up(tmp_path, server):
    """SIPp's own uac_pcap: INVITE, 200, ACK, 7 s of A-law audio from a pcap, BYE."""
    assert sipp(tmp_path, server.udp, "builtin:uac_pcap", "-s", "9196") == 0
    server.process.wait_for(r"answered 9196 from sipp \(PCMA\)")
    server.process.wait_for(r"call ended: caller hung up")
    status, health = get_json(server.http, "/health")
    assert health["subsystems"]["telephony"]["calls"] == 0


def test_sipp_calls_the_tone_extension(tmp_path, server):
    assert sipp(tmp_path, server.udp, "builtin:uac", "-s", "9197") == 0
    server.process.wait_for(r"answered 9197 from sipp \(PCMU\)")


def test_a_stranger_calling_a_private_number_is_challenged_whether_it_exists_or_not(tmp_path, server):
    for number in ("1001", "5555"):
        assert sipp(tmp_path, server.udp, "invite_refused.xml", "-s", number, final=407) == 0


def authenticated_call(tmp_path, server, number, final):
    """
    An INVITE from extension 1001 answering the 407.  SIPp hashes uri
    "sip:host:port" unless told otherwise; RFC 3261 §22.4 wants the
    Request-URI there, and the server insists (else a response could be
    replayed against another number), so -auth_uri says it (SIPp adds the
    "sip:").
    """
    return sipp(
        tmp_path, server.udp, "invite_authenticated.xml", "-s", number, "-au", "1001", "-ap", "demo1001",
        "-auth_uri", f"{number}@127.0.0.1:{server.udp}", final=final,
    )


def test_an_extension_calling_an_unknown_number_gets_404(tmp_path, server):
    assert authenticated_call(tmp_path, server, "5555", 404) == 0


def test_an_extension_calling_one_with_no_phone_registered_gets_480(tmp_path, server):
    assert authenticated_call(tmp_path, server, "1002", 480) == 0


def test_sipp_without_the_request_uri_in_its_digest_is_refused(tmp_path, server):
    status = sipp(
        tmp_path, server.udp, "invite_authenticated.xml", "-s", "5555", "-au", "1001", "-ap", "demo1001", final=403
    )
    assert status == 0
    server.process.wait_for(r"INVITE from udp:127\.0\.0\.1:\d+ refused: uri does not match the Request-URI")


def test_rfc_2833_digits_from_sipp_are_collected_and_the_server_hangs_up(tmp_path, server):
    """
    SIPp plays its recorded RFC 2833 events 1, 2, 3, #; the DTMF test
    collects "123", ends on # and sends the BYE (a hang-up from our side).
    """
    assert sipp(tmp_path, server.udp, "dtmf_call.xml", "-s", "9198") == 0
    server.process.wait_for(r"DTMF test: caller pressed 123 ")


def test_random_bytes_at_the_sip_ports_are_dropped_and_the_server_carries_on(tmp_path, server):
    rng = random.Random(4475)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for _ in range(2000):
            udp.sendto(rng.randbytes(rng.randrange(1, 1400)), ("127.0.0.1", server.udp))
    with socket.create_connection(("127.0.0.1", server.tcp)) as tcp:
        tcp.sendall(rng.randbytes(100_000))
        tcp.settimeout(DEADLINE)
        # Out of step for good: the server closes the connection.
        while tcp.recv(65536):
            pass
    server.process.wait_for(r"malformed SIP from udp:127\.0\.0\.1")
    # Once the flood's share of the source's rate has passed, it is served.
    assert sipp(tmp_path, server.udp, "options.xml") == 0
    status, health = get_json(server.http, "/health")
    assert (status, health["subsystems"]["telephony"]["state"]) == (200, "ok")
