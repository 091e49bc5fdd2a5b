"""
The real server with [telephony] media_workers = 2, against SIPp and
baresip.  Calls to the tone, echo and DTMF-test numbers have their RTP
carried by worker processes (each worker logs a session's packet counts as
it closes it), and a call to an extension has both legs in one worker.
Audio tests of test_call_audio, test_b2bua_baresip and
test_bulletins_by_phone (the tone, a transcoded bridged call, a
conference room of three, an IVR that takes a PIN by DTMF and records;
what baresip heard) run here again with the media in workers; the echo
is checked by packet counts below.  (Phone trading's flow uses nothing
more of the media than the bulletins' IVR does.)  A worker killed in the middle of a call
loses that call, which the server hangs up with a BYE, and is started
again; stopping the server stops the workers.
"""

import os
import re
import signal
import subprocess

import pytest

from postgres import free_port
from processes import DEADLINE, get_json
from test_sipp import SCENARIOS, sipp
from test_sipp_faults import call_extension

# The same tests as there (and their fixtures), on this module's servers:
# media in workers.
import test_b2bua_baresip
from test_b2bua_baresip import test_three_callers_in_a_conference_room_hear_each_other_not_themselves
from test_bulletins_by_phone import (
    bulletins_server,
    recordings,
    test_an_editor_records_a_bulletin_by_phone_and_a_listener_hears_it,
)
from test_call_audio import test_the_tone_extension_plays_1khz_one_second_on_one_second_off

RUN_AGAIN_HERE = (
    test_three_callers_in_a_conference_room_hear_each_other_not_themselves,
    test_the_tone_extension_plays_1khz_one_second_on_one_second_off,
    test_an_editor_records_a_bulletin_by_phone_and_a_listener_hears_it,
    bulletins_server,
    recordings,
)

# The store only holds the demo data these calls need.
pytestmark = pytest.mark.backend_independent

CLOSED = r"media worker (\d): session {session} on port (\d+) closed: (\d+) RTP packets sent, (\d+) received"


@pytest.fixture
def start_server(start_server):
    """conftest's, with media_workers = 2 at priority -2, started once both workers are ready."""

    servers = []

    def start(extra_tables=None, **telephony):
        started = start_server(extra_tables, **{"media_workers": 2, "media_worker_nice": -2, **telephony})
        for index in range(2):
            started.process.wait_for(rf"media worker {index} \(pid \d+\) ready")
        servers.append(started)
        return started

    yield start
    # After a test that made calls: a worker carried (and closed) a
    # session, and no call fell back to the server's own engine.
    for started in servers:
        process = started.process
        if "answered " in process.output and process.process.poll() is None:
            process.wait_for(r"media worker \d: session \d+ on port \d+ closed")
        assert "new calls' media runs in the server process" not in process.output


@pytest.fixture
def server(start_server):
    return start_server()


def telephony(server):
    status, health = get_json(server.http, "/health")
    assert status == 200
    return health["subsystems"]["telephony"]


def closed(server, session):
    """(worker, port, packets sent, packets received) of the worker's log line for session C{session}."""
    match = server.process.wait_for(CLOSED.format(session=session))
    return tuple(int(group) for group in match.groups())


def test_tone_echo_and_dtmf_calls_have_their_audio_in_the_workers(tmp_path, server):
    workers = telephony(server)["media"]["workers"]
    assert [(w["index"], w["up"]) for w in workers] == [(0, True), (1, True)]
    # [telephony] media_worker_nice reached them (make test runs as root).
    expected = -2 if os.geteuid() == 0 else 0
    assert [os.getpriority(os.PRIO_PROCESS, w["pid"]) for w in workers] == [expected, expected]

    # The tone test for 3 s, SIPp sending every packet back: both ways.
    assert sipp(tmp_path, server.udp, "builtin:uac", "-s", "9197", "-d", "3000", "-rtp_echo") == 0
    server.process.wait_for(r"answered 9197 from sipp \(PCMU\)")
    _, _, sent, received = closed(server, 1)
    # A packet every 20 ms: some 150 in 3 s (fewer on a busy machine), most of them back.
    assert sent >= 50 and received >= 25

    # The echo test: SIPp's recorded A-law audio comes straight back.
    assert sipp(tmp_path, server.udp, "builtin:uac_pcap", "-s", "9196") == 0
    _, _, sent, received = closed(server, 2)
    assert received >= 100 and sent >= 100

    # Key presses as RFC 4733 events reach the DTMF test through a worker.
    assert sipp(tmp_path, server.udp, "dtmf_call.xml", "-s", "9198") == 0
    server.process.wait_for(r"DTMF test: caller pressed 123 ")
    closed(server, 3)

    # The sessions were shared out: with the workers equally loaded, the
    # next call goes to the one that has had fewer.
    assert closed(server, 1)[0] != closed(server, 2)[0]
    health = telephony(server)
    assert health["calls"] == 0 and health["media"]["sessions"] == 0


def test_a_transcoded_bridged_call_is_heard_both_ways(tmp_path, server, softphone):
    """test_b2bua_baresip's bridged call, PCMU to PCMA (the same-codec case adds nothing here)."""
    test_b2bua_baresip.test_one_extension_calls_another_and_they_hear_each_other(
        tmp_path, server, softphone, ("PCMU", "PCMA")
    )


def test_a_bridged_call_has_both_legs_in_one_worker(tmp_path, server):
    """Extension 1002 calls 1001 (SIPp both): the B2BUA opens the second leg beside the first."""
    call_extension(tmp_path, server, "caller_hangs_up.xml", "callee_is_hung_up.xml")
    server.process.wait_for(r"InboundCall.*call ended: caller hung up")
    caller_leg, callee_leg = closed(server, 1), closed(server, 2)
    assert caller_leg[0] == callee_leg[0] and caller_leg[1] != callee_leg[1]
    assert telephony(server)["calls"] == 0


def test_a_killed_worker_hangs_up_its_call_and_is_restarted(tmp_path, server):
    caller = subprocess.Popen(
        [
            "sipp", f"127.0.0.1:{server.udp}", "-sf", os.path.join(SCENARIOS, "hung_up_by_server.xml"),
            "-s", "9197", "-m", "1", "-i", "127.0.0.1", "-mi", "127.0.0.1", "-bind_local", "-ci", "127.0.0.1",
            "-nostdin", "-p", str(free_port()), "-rtp_echo", "-timeout", "60", "-timeout_error",
        ],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        server.process.wait_for(r"answered 9197 from")
        [worker] = [w for w in telephony(server)["media"]["workers"] if w["sessions"] == 1]
        os.kill(worker["pid"], signal.SIGKILL)
        server.process.wait_for(
            rf"media worker {worker['index']} \(pid {worker['pid']}\) is gone: .* hanging up its 1 calls"
        )
        server.process.wait_for(r"call's media is lost \(media worker \d died\); hanging up")
        server.process.wait_for(r"call ended: media lost")
        # SIPp got the BYE and answered it.
        assert caller.wait(timeout=DEADLINE) == 0
    finally:
        if caller.poll() is None:
            caller.kill()
    server.process.wait_for(rf"media worker {worker['index']} \(pid (?!{worker['pid']}\))\d+\) ready")
    health = telephony(server)
    assert health["calls"] == 0
    assert health["media"]["worker_restarts"] == 1
    assert all(w["up"] for w in health["media"]["workers"])
    # New calls are carried again, by whichever worker is least loaded.
    assert sipp(tmp_path, server.udp, "builtin:uac", "-s", "9197", "-d", "1000", "-rtp_echo") == 0
    _, _, sent, _ = closed(server, 2)
    assert sent > 0


def test_stopping_the_server_stops_the_workers(server):
    pids = [w["pid"] for w in telephony(server)["media"]["workers"]]
    assert server.process.terminate()
    output = server.process.output
    for index, pid in enumerate(pids):
        assert re.search(rf"media worker {index} \(pid {pid}\) stopped", output), output
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert "is gone" not in output
