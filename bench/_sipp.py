"""
SIPp as the call benches (concurrent_calls.py, ivr_sessions.py) drive it:
the ports the server and SIPp use for media, the scenario pieces every
call shares (the INVITE with its SDP offer, the answer, the ACK; the
caller's BYE), SIPp's command line, and the measured load: started,
waited for until every call is up, and waited for to the end, with its
statistics.
"""

import contextlib
import os
import subprocess
import time

from _machine import load_cpus, log, sipp_stats, wait_until
from _rtp import MediaSink
from _server import bench_server, free_port, live_calls

# The server's RTP ports: below the ephemeral range and away from the
# default 20000-29999, so that other servers and tests on the machine
# neither take them nor show up in the capture.  The runs of the benches
# (ivr_sessions.py --tone) never overlap.
RTP_PORTS = (30000, 32767)
# Every call advertises SIPp's one echo port ([media_port], -mp); SIPp
# binds it and +2 (video).
SIPP_MEDIA_PORT = 10000
MAX_CALLS = (RTP_PORTS[1] - RTP_PORTS[0]) // 2 - 10
# From every call up to the measurements.
SETTLE_SECONDS = 3.0


# The scenario pieces.  SIPp fills in the [keywords]; {caller} is the
# prefix of the calling number, {name} the scenario's.

_CALL_SET_UP = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="{name}">
  <send retrans="500">
    <![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Bench" <sip:{caller}[call_number]@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:bench@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=- 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15

    ]]>
  </send>

  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true"/>

  <send>
    <![CDATA[
{ack}
    ]]>
  </send>
"""

# ACK and BYE: in the dialog, so To carries the server's tag.
_CALLER_REQUEST = """
      {method} sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Bench" <sip:{caller}[call_number]@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {sequence} {method}
      Contact: <sip:bench@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
"""

_CALLER_HANGS_UP = """
  <pause milliseconds="{pause_ms}"/>

  <send retrans="500">
    <![CDATA[
{bye}
    ]]>
  </send>

  <recv response="200" crlf="true"/>
</scenario>
"""


def scenario_call_set_up(name, caller):
    """
    A scenario's opening: the INVITE, whose SDP offers PCMA and
    telephone-event 101 on SIPp's media port (as
    tests/sip/scenarios/dtmf_call.xml), the answer, the ACK.  C{caller}
    prefixes the calling number.
    """
    ack = _CALLER_REQUEST.format(method="ACK", sequence=1, caller=caller)
    return _CALL_SET_UP.format(name=name, caller=caller, ack=ack)


def scenario_caller_hangs_up(pause_ms, caller):
    """A scenario's end: after C{pause_ms}, the caller's BYE, answered."""
    bye = _CALLER_REQUEST.format(method="BYE", sequence=2, caller=caller)
    return _CALLER_HANGS_UP.format(pause_ms=pause_ms, bye=bye)


# SIPp's runs.


@contextlib.contextmanager
def server_for_sipp(directory, routes, extra_tables=None, **telephony):
    """
    L{bench_server} with its RTP on RTP_PORTS, and a L{MediaSink} taking
    its RTCP to SIPp's echo port; C{telephony}: more [telephony] settings.
    """
    with MediaSink(SIPP_MEDIA_PORT), bench_server(
        directory, routes=routes, extra_tables=extra_tables,
        rtp_port_min=RTP_PORTS[0], rtp_port_max=RTP_PORTS[1], **telephony,
    ) as server:
        yield server


def sipp_command(server, scenario, service, calls, media_port, *options):
    """SIPp on 127.0.0.1 calling C{service} C{calls} times, its media on C{media_port}; then C{options}."""
    return [
        "sipp", f"127.0.0.1:{server.udp}", "-sf", scenario, "-s", service, "-m", str(calls), "-l", str(calls),
        "-i", "127.0.0.1", "-mi", "127.0.0.1", "-mp", str(media_port), "-bind_local", "-ci", "127.0.0.1",
        "-nostdin", "-p", str(free_port()), *options,
    ]


def set_up_seconds(calls, args):
    """How long the load may take to have every call up, at --rate calls/s."""
    return calls / args.rate * 1.3 + 5


def measured_seconds(calls, args):
    """From SIPp's first call to the end of the window and the profile, at the most."""
    return (
        set_up_seconds(calls, args) + SETTLE_SECONDS + args.window_wait + args.window + args.profile_for(calls)
    )


class CallLoad:
    """
    SIPp making the C{calls} measured calls in C{directory} at --rate
    calls/s, every call echoing the server's RTP from SIPP_MEDIA_PORT,
    statistics in sipp_stats.csv, output in sipp.log; with --pin on the
    second core.
    """

    def __init__(self, children, args, server, directory, scenario, service, calls, timeout):
        self.directory, self.calls = directory, calls
        self.stat_file = os.path.join(directory, "sipp_stats.csv")
        self.process = children.start(
            [
                *load_cpus(args), *sipp_command(
                    server, scenario, service, calls, SIPP_MEDIA_PORT,
                    "-r", str(args.rate), "-rtp_echo", "-buff_size", "4194304", "-timeout", str(timeout),
                    "-trace_stat", "-stf", self.stat_file, "-fd", "1", "-trace_err",
                ),
            ],
            os.path.join(directory, "sipp.log"),
            cwd=directory,
        )
        self.pid = self.process.pid

    def wait_until_up(self, server, args, label):
        """Until the server holds every call (or L{set_up_seconds} have passed), then SETTLE_SECONDS."""

        def calls_up():
            if self.process.poll() is not None:
                raise RuntimeError(f"SIPp ended early ({self.process.returncode}); see {self.directory}/sipp.log")
            return (live_calls(server) or 0) >= self.calls

        patience = set_up_seconds(self.calls, args)
        if not wait_until(calls_up, patience, interval=0.5):
            log(f"{label}: not all up after {patience:.0f} s; measuring what there is")
        time.sleep(SETTLE_SECONDS)

    def finish(self, children, patience, label):
        """
        Wait (at most C{patience} s) for SIPp to end, else stop it; its exit
        status and its count of successful and failed calls.
        """
        try:
            self.process.wait(patience)
        except subprocess.TimeoutExpired:
            log(f"{label}: SIPp did not finish; stopping it")
        status = children.stop(self.process)
        final = sipp_stats(self.stat_file)
        return status, int(final.get("SuccessfulCall(C)", 0) or 0), int(final.get("FailedCall(C)", 0) or 0)
