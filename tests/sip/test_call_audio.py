"""
Calls from baresip, a real softphone, to the service numbers, checking the
audio itself: what baresip recorded (sndfile's decoded dump) must be the
echo of what it sent, or our test tone with its cadence.  Each call ends on
its own when baresip's audio file runs out ("end of file"), which is the
event the tests wait for.
"""

import pytest

from baresip import Baresip
from call_checks import RATE, dominant_frequency, read_wav, rms, sine, write_wav

# The store only holds the accounts and registrations these calls use; the
# registrar's storage runs on both backends in test_registrar and test_sipp.
pytestmark = pytest.mark.backend_independent

def call(tmp_path, server, number, sent):
    """baresip calls C{number} sending C{sent}; returns what it received."""
    directory = tmp_path / "phone"
    directory.mkdir()
    phone = Baresip(directory, wav=write_wav(tmp_path / "sent.wav", sent))
    try:
        phone.command("uanew", "<sip:2001@127.0.0.1>;regint=0;audio_codecs=PCMU,PCMA")
        phone.dial(f"sip:{number}@127.0.0.1:{server.udp}")
        established = phone.wait_for_event("CALL_ESTABLISHED", "CALL_CLOSED")
        assert established["type"] == "CALL_ESTABLISHED", phone.events
        assert phone.wait_for_event("CALL_CLOSED")["param"] == "end of file"
    finally:
        assert phone.stop() == 0
    [received] = [path for path in phone.recordings() if path.endswith("-dec.wav")]
    return read_wav(received)


def test_the_echo_test_sends_back_what_the_caller_says(tmp_path, server):
    received = call(tmp_path, server, "9196", sine(440, 3.0))
    server.process.wait_for(r"call ended: caller hung up")
    # Ignore the start (the echo comes back one jitter buffer later) and
    # look at the second half: it is the caller's own 440 Hz.
    middle = received[len(received) // 3 : 2 * len(received) // 3]
    assert rms(middle) > 2000
    assert dominant_frequency(middle) == 440


def runs(flags):
    """Lengths of the runs of equal values: [True, True, False] -> [2, 1]."""
    lengths = []
    for i, flag in enumerate(flags):
        if i and flag == flags[i - 1]:
            lengths[-1] += 1
        else:
            lengths.append(1)
    return lengths


def test_the_tone_extension_plays_1khz_one_second_on_one_second_off(tmp_path, server):
    received = call(tmp_path, server, "9197", [0] * (RATE * 6))
    window = RATE // 10  # 100 ms
    levels = [rms(received[i : i + window]) for i in range(0, len(received) - window + 1, window)]
    on = [level > 1000 for level in levels]
    # Whole runs (not the first and last, cut by the recording's ends) are
    # one second of tone, one of silence: 10 windows, give or take one for
    # where the recording's windows fall.
    inner = runs(on)[1:-1]
    assert len(inner) >= 2, on
    assert all(9 <= length <= 11 for length in inner), on
    loudest = levels.index(max(levels)) * window
    assert dominant_frequency(received[loudest : loudest + window]) == 1000
