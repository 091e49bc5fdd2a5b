"""
Extension to extension through the server, with two real softphones
(baresip 1.0): the caller is challenged (407) and answers with its
password, the callee's phone rings through its registration, and the audio
goes both ways through our media engine (each leg anchored at our RTP
ports, bridged there).  Each phone sends its own tone; each must hear the
other's.
"""

import pytest

from call_checks import dominant_frequency, power_at, read_wav, rms, sine, write_wav
from test_baresip import registration

# The store only holds the accounts and registrations these calls use; the
# registrar's storage runs on both backends in test_registrar and test_sipp.
pytestmark = pytest.mark.backend_independent


def heard(phone):
    [received] = [path for path in phone.recordings() if path.endswith("-dec.wav")]
    samples = read_wav(received)
    return samples[len(samples) // 3 : 2 * len(samples) // 3]


@pytest.mark.parametrize("codecs", [("PCMU", "PCMU"), ("PCMU", "PCMA")])
def test_one_extension_calls_another_and_they_hear_each_other(tmp_path, server, softphone, codecs):
    caller = softphone("caller", wav=write_wav(tmp_path / "caller.wav", sine(1000, 3.0)))
    callee = softphone("callee", wav=write_wav(tmp_path / "callee.wav", sine(440, 6.0)))
    caller.register("1002", "demo1002", server.udp, codecs=codecs[0])
    callee.register("1001", "demo1001", server.udp, answermode="auto", codecs=codecs[1])
    assert registration(caller)["type"] == "REGISTER_OK", caller.events
    assert registration(callee)["type"] == "REGISTER_OK", callee.events

    caller.dial(f"sip:1001@127.0.0.1:{server.udp}")
    established = caller.wait_for_event("CALL_ESTABLISHED", "CALL_CLOSED")
    assert established["type"] == "CALL_ESTABLISHED", caller.events
    incoming = callee.wait_for_event("CALL_ESTABLISHED", "CALL_CLOSED")
    assert (incoming["type"], incoming["direction"]) == ("CALL_ESTABLISHED", "incoming"), callee.events
    # The callee sees the caller as the extension it authenticated as.
    assert incoming["peeruri"].startswith("sip:1002@")

    # The caller's 3 s of tone run out and it hangs up; the callee is told.
    assert caller.wait_for_event("CALL_CLOSED")["param"] == "end of file"
    assert callee.wait_for_event("CALL_CLOSED")["param"] == "Connection reset by peer"
    server.process.wait_for(r"connected to sip:1001")
    assert caller.stop() == 0 and callee.stop() == 0

    to_callee, to_caller = heard(callee), heard(caller)
    assert rms(to_callee) > 2000 and dominant_frequency(to_callee) == 1000
    assert rms(to_caller) > 2000 and dominant_frequency(to_caller) == 440


def test_calling_an_extension_with_a_wrong_password_is_refused(tmp_path, server, softphone):
    intruder = softphone("intruder")
    intruder.command("uanew", "<sip:1002@127.0.0.1>;auth_pass=guess;regint=0;audio_codecs=PCMU")
    intruder.dial(f"sip:1001@127.0.0.1:{server.udp}")
    closed = intruder.wait_for_event("CALL_CLOSED", "CALL_ESTABLISHED")
    assert (closed["type"], closed["param"]) == ("CALL_CLOSED", "403 Forbidden"), intruder.events


def test_an_extension_with_no_phone_registered_is_unavailable(tmp_path, server, softphone):
    caller = softphone("caller")
    caller.register("1002", "demo1002", server.udp)
    assert registration(caller)["type"] == "REGISTER_OK", caller.events
    caller.dial(f"sip:1001@127.0.0.1:{server.udp}")
    closed = caller.wait_for_event("CALL_CLOSED", "CALL_ESTABLISHED")
    assert (closed["type"], closed["param"]) == ("CALL_CLOSED", "480 Temporarily Unavailable"), caller.events


def talking(tmp_path, server, softphone):
    """
    1002 (sending 8 s of 440 Hz) calls 1001 (auto-answer, 20 s of 700 Hz),
    until each hears the other's RTP; returns (caller, callee).
    """
    caller = softphone("caller", wav=write_wav(tmp_path / "caller.wav", sine(440, 8.0)))
    callee = softphone("callee", wav=write_wav(tmp_path / "callee.wav", sine(700, 20.0)))
    caller.register("1002", "demo1002", server.udp)
    callee.register("1001", "demo1001", server.udp, answermode="auto")
    assert registration(caller)["type"] == "REGISTER_OK", caller.events
    assert registration(callee)["type"] == "REGISTER_OK", callee.events
    caller.dial(f"sip:1001@127.0.0.1:{server.udp}")
    assert caller.wait_for_event("CALL_ESTABLISHED", "CALL_CLOSED")["type"] == "CALL_ESTABLISHED", caller.events
    assert callee.wait_for_event("CALL_RTPESTAB", "CALL_CLOSED")["type"] == "CALL_RTPESTAB", callee.events
    assert caller.wait_for_event("CALL_RTPESTAB", "CALL_CLOSED")["type"] == "CALL_RTPESTAB", caller.events
    return caller, callee


def test_the_callee_transfers_the_caller_to_the_tone_number(tmp_path, server, softphone):
    """
    Blind transfer (REFER, RFC 3515) from a real phone: the callee sends
    REFER to 9197; the server answers 202, connects the caller to the tone
    service, tells the callee (NOTIFY with a sipfrag 200) and hangs it up.
    The caller, still in its call, hears 1 kHz and nothing of the callee.
    """
    caller, callee = talking(tmp_path, server, softphone)

    callee.command("transfer", f"sip:9197@127.0.0.1:{server.udp}")
    server.process.wait_for(r"transferred to 9197")
    assert callee.wait_for_event("CALL_CLOSED")["type"] == "CALL_CLOSED"
    assert caller.wait_for_event("CALL_CLOSED")["param"] == "end of file"
    assert caller.stop() == 0 and callee.stop() == 0

    [received] = [path for path in caller.recordings() if path.endswith("-dec.wav")]
    samples = read_wav(received)
    # The tone service plays 1 s on, 1 s off: the last four seconds hold two
    # seconds of it, and nothing of the callee any more.
    tail = samples[-4 * 8000 :]
    assert power_at(tail, 1000) > 100 * power_at(tail, 700)


def test_three_callers_in_a_conference_room_hear_each_other_not_themselves(tmp_path, server, softphone):
    tones = {"a": 440, "b": 700, "c": 1000}
    phones = {}
    for name, frequency in tones.items():
        phone = softphone(name, wav=write_wav(tmp_path / f"{name}.wav", sine(frequency, 6.0)))
        phone.command("uanew", f"<sip:{name}@127.0.0.1>;regint=0;audio_codecs=PCMU,PCMA")
        phones[name] = phone
    for phone in phones.values():
        phone.dial(f"sip:9300@127.0.0.1:{server.udp}")
        assert phone.wait_for_event("CALL_ESTABLISHED", "CALL_CLOSED")["type"] == "CALL_ESTABLISHED", phone.events
    for phone in phones.values():
        assert phone.wait_for_event("CALL_CLOSED")["param"] == "end of file"
        assert phone.stop() == 0
    server.process.wait_for(r"joined conference 9300 \(3 in the room\)")
    for name, phone in phones.items():
        received = heard(phone)
        own = power_at(received, tones[name])
        for other, frequency in tones.items():
            if other != name:
                assert power_at(received, frequency) > 20 * own, (name, other)


def test_a_transfer_to_an_outside_number_is_refused(tmp_path, server, softphone):
    """
    A transfer must not cost a toll: REFER to a number that would go out
    through a trunk is accepted (202) and then refused in the NOTIFY (403),
    and nothing is dialled.  (baresip 1.0 reports "transfer failed: 403
    Forbidden" and then hangs up anyway; the server ends the caller's leg
    with it.)
    """
    caller, callee = talking(tmp_path, server, softphone)

    callee.command("transfer", f"sip:013800138000@127.0.0.1:{server.udp}")
    server.process.wait_for(r"transfer to 013800138000 refused")
    server.process.wait_for(r"OutboundCall.*call ended: callee hung up")
    assert caller.wait_for_event("CALL_CLOSED")["param"] == "Connection reset by peer"
    assert callee.stop() == 0 and caller.stop() == 0
    assert "transfer failed: 403 Forbidden" in callee.output
    assert "calling sip:13800138000" not in server.process.output
