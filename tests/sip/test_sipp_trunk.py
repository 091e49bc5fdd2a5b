"""
A call out through a carrier trunk, in the whole server, with SIPp playing
the carrier (its registrar and proxy on one address) and a second SIPp
playing extension 1002: the trunk registers with digest authentication at
start, the extension dials 0 + a mobile number, the server strips the
prefix and calls the carrier with the trunk's credentials (answering its
challenge), and the call is bridged until the extension hangs up.
"""

import pytest

from test_sipp_faults import SIPp, header, responses

# The store only holds the accounts and registrations these calls use; the
# registrar's storage runs on both backends in test_registrar and test_sipp.
pytestmark = pytest.mark.backend_independent

CARRIER_PASSWORD = "s3cret-4008"


def test_an_extension_calls_out_through_the_carrier(tmp_path, start_server, monkeypatch):
    monkeypatch.setenv("CALLCENTER_TEST_CARRIER_PASSWORD", CARRIER_PASSWORD)
    # -m 2: the trunk's REGISTER and the call (the un-REGISTER at the
    # server's stop comes after SIPp has gone, and is bounded there).
    carrier = SIPp(tmp_path, "carrier", 9, "carrier.xml", "-m", "2", timeout=30)
    server = start_server(
        trunks=[
            {
                "name": "carrier",
                "registrar": f"127.0.0.1:{carrier.local_port}",
                "domain": "carrier.test",
                "username": "4008001234",
                "password_env": "CALLCENTER_TEST_CARRIER_PASSWORD",
                "prefix": "0",
                "strip": 1,
            }
        ]
    )
    server.process.wait_for(r"<Trunk 4008001234@carrier\.test via udp:127\.0\.0\.1:\d+>: registered for 3600 s")
    caller = SIPp(
        tmp_path, "caller", server.udp, "caller_hangs_up.xml",
        "-s", "013800138000", "-au", "1002", "-ap", "demo1002",
        "-auth_uri", f"013800138000@127.0.0.1:{server.udp}",
    )
    assert caller.wait() == 0, caller.errors()
    assert carrier.wait() == 0, carrier.errors()
    [invite] = [m for m in carrier.received() if m.startswith("INVITE ") and "Authorization:" in m]
    assert invite.startswith("INVITE sip:13800138000@carrier.test SIP/2.0")
    # The caller ID passed on is the extension that authenticated.
    assert "sip:1002@carrier.test" in header(invite, "From")
    assert [header(m, "CSeq") for m in responses(caller.received(), 200)][-1] == "3 BYE"
