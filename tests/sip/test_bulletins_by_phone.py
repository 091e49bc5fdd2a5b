"""
The voice information service (自动声讯) end to end from real softphones:
an editor calls the bulletins number with baresip, logs in with the editor
id and PIN by RFC 4733 DTMF, records a bulletin (a 700 Hz tone is the
editor's voice), hears it played back and publishes it with 2; a listener
then calls, picks the category and hears that very tone.  An editor who
keys a wrong PIN three times is told so and the call ends, with nothing
recorded.

Keys are sent while the prompt they answer plays (the server's first RTP
packet is the first menu's first frame; each later key arrives while the
next prompt plays), so that each cuts its prompt short: a key that arrives
before a prompt starts is kept, but the prompt is then heard out.  What a
softphone heard is read while the call goes on (L{Heard}), to know when
the bulletin has been played.
"""

import os
import re
import struct

import pytest

from call_checks import (
    FRAME, RATE, Heard, best_match, envelope, is_tone, read_wav, rows, runs_of, server_output, sine, wait_until,
    write_wav,
)

BULLETINS_NUMBER = "9400"
EDITOR, PIN = "7001", "70017001"
WRONG_PIN = "24680"
VOICE_HZ = 700
BEEP_HZ = 1000
# The tone is all the editor says, from answer to hang-up (baresip's audio
# file starts with the call and ends it when it runs out).
VOICE_SECONDS = 40
# Pressing # once the recording holds this much audio (and 20 ms frames
# make a second of audio 50 frames).
RECORD_SECONDS = 2
FRAMES_PER_SECOND = 50
# A WAV header (RIFF, fmt, data) as our recorder writes it.
HEADER_BYTES = 44


@pytest.fixture
def recordings(tmp_path):
    return tmp_path / "recordings"


@pytest.fixture
def bulletins_server(backend, start_server, prompt_pack, recordings):
    if backend != "sqlite":
        # Tens of seconds of prompts in real time; the flow on PostgreSQL is
        # covered by tests/ivr/test_information_flows.py.  This test is about
        # the SIP, DTMF and audio path, which does not depend on the database.
        pytest.skip("the SIP audio path runs once, on SQLite")
    return start_server(
        routes={BULLETINS_NUMBER: "ivr:bulletins"},
        extra_tables={"ivr": {"prompts": prompt_pack, "recordings": str(recordings)}},
    )


def call_bulletins(phone, server, user):
    """Dial the bulletins number; returns once the first prompt is heard (keys now cut it short)."""
    phone.command("uanew", f"<sip:{user}@127.0.0.1>;regint=0;audio_codecs=PCMU")
    phone.dial(f"sip:{BULLETINS_NUMBER}@127.0.0.1:{server.udp}")
    assert phone.wait_for_event("CALL_ESTABLISHED", "CALL_CLOSED")["type"] == "CALL_ESTABLISHED", phone.events
    assert phone.wait_for_event("CALL_RTPESTAB", "CALL_CLOSED")["type"] == "CALL_RTPESTAB", phone.events
    return server.process.wait_for(rf"call from {user} to {BULLETINS_NUMBER} .*\[cid=(\w+)\]").group(1)


def recorded_files(directory):
    return [os.path.join(path, name) for path, _, names in os.walk(directory) for name in names]


def recorded_seconds(directory):
    """Seconds of G.711 audio in the one recording being made under C{directory} (0 before it starts)."""
    files = recorded_files(directory)
    assert len(files) <= 1, files
    return (os.path.getsize(files[0]) - HEADER_BYTES) / 8000 if files else 0


def ulaw_to_linear(byte):
    """One G.711 μ-law byte as a 16-bit sample (ITU-T G.711, as sox decodes it)."""
    byte = ~byte & 0xFF
    magnitude = (((byte & 0x0F) << 3) + 0x84) << ((byte >> 4) & 0x07)
    return 0x84 - magnitude if byte & 0x80 else magnitude - 0x84


def read_ulaw_wav(path):
    """The samples of an 8 kHz mono μ-law WAV file (format tag 7), as the server records."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE", data[:16]
    offset, audio = 12, None
    while offset + 8 <= len(data):
        chunk, length = data[offset:offset + 4], struct.unpack("<I", data[offset + 4:offset + 8])[0]
        if chunk == b"fmt ":
            assert struct.unpack("<HHI", data[offset + 8:offset + 16]) == (7, 1, 8000)
        elif chunk == b"data":
            audio = data[offset + 8:offset + 8 + length]
        offset += 8 + length + length % 2
    return [ulaw_to_linear(byte) for byte in audio]


def frames_of(samples):
    return [samples[i:i + FRAME] for i in range(0, len(samples) - FRAME + 1, FRAME)]


def kind(frame):
    """What a 20 ms frame heard is: the editor's voice, the record beep, or something else (None)."""
    if is_tone(frame, VOICE_HZ):
        return "voice"
    if is_tone(frame, BEEP_HZ):
        return "beep"
    return None


def runs(kinds, wanted, at_least=5):
    """
    The lengths of the runs of C{wanted} frames among C{kinds}, across a
    frame or two lost on the way, ignoring blips shorter than C{at_least}.
    """
    return [length for _, length in runs_of([k == wanted for k in kinds], max_gap=2) if length >= at_least]


def test_an_editor_records_a_bulletin_by_phone_and_a_listener_hears_it(
    bulletins_server, softphone, tmp_path, recordings, db_url,
):
    server = bulletins_server
    editor = softphone("editor", wav=write_wav(tmp_path / "voice.wav", sine(VOICE_HZ, VOICE_SECONDS)))
    heard_by_editor = Heard(editor, kind)
    editor_cid = call_bulletins(editor, server, "2001")
    # 9 for editors, the id and the PIN; then 1, the category to record
    # in, once the PIN is checked (argon2, in a thread: sent with the
    # others, the 1 could come before the category prompt starts, which
    # would then be heard out).
    editor.send_dtmf(f"9{EDITOR}#{PIN}#")
    server.process.wait_for(rf"editor {EDITOR} login on call {editor_cid}: ok")
    editor.send_dtmf("1")
    # The record prompts, the beep, then the recording: # once it holds enough.
    wait_until(
        # The flow leaves out the last 250 ms (the time of the # key).
        lambda: recorded_seconds(recordings) >= RECORD_SECONDS + 0.25,
        lambda: f"{RECORD_SECONDS}s recorded: {recorded_files(recordings)}\n{server_output(server.process)}",
    )
    editor.send_dtmf("#")
    # The recording is played back, then the review menu, which 2 cuts short: publish.
    heard_by_editor.wait_for_run(int(1.5 * FRAMES_PER_SECOND), pick=lambda k: k == "voice")
    editor.send_dtmf("2")
    published = server.process.wait_for(
        rf"editor {EDITOR} published bulletin (\d+) in category 1 on call {editor_cid}"
    )
    editor.hangup()
    assert editor.wait_for_event("CALL_CLOSED")
    assert editor.stop() == 0
    assert PIN not in server.process.output

    [bulletin] = rows(db_url, "SELECT * FROM bulletins")
    assert (bulletin["id"], bulletin["category"], bulletin["recorded_by"], bulletin["expire_at"]) == (
        int(published.group(1)), "1", EDITOR, None)
    [path] = recorded_files(recordings)
    assert os.path.relpath(path, recordings) == bulletin["audio_path"]
    recorded = read_ulaw_wav(path)
    # The # takes a fraction of a second to arrive: a little more than asked.
    assert RECORD_SECONDS * RATE <= len(recorded) < (RECORD_SECONDS + 1.5) * RATE, len(recorded)
    assert abs(bulletin["duration_ms"] - len(recorded) // 8) <= 20, (bulletin, len(recorded))
    # The editor's voice from start to end, but for the last frames: RFC
    # 4733 events replace the audio while the # is sent.
    [voiced] = runs([kind(frame) for frame in frames_of(recorded)], "voice")
    assert voiced >= len(recorded) / FRAME - 15, (voiced, len(recorded) / FRAME)

    # What the editor heard: the 300 ms beep before recording, then the
    # recording played back, all of it.
    heard = [kind(frame) for frame in frames_of(read_wav(heard_by_editor.path()))]
    assert 13 <= sum(runs(heard, "beep")) <= 16, runs(heard, "beep")
    assert heard.index("beep") < heard.index("voice")
    assert abs(sum(runs(heard, "voice")) - voiced) <= 3, (runs(heard, "voice"), voiced)

    # A listener picks category 1 while the menu plays and hears the
    # bulletin: the editor's 700 Hz, as long as it was recorded.
    listener = softphone("listener")
    heard_by_listener = Heard(listener, kind)
    call_bulletins(listener, server, "2002")
    listener.send_dtmf("1")
    heard_by_listener.wait_for_run(int(1.5 * FRAMES_PER_SECOND), pick=lambda k: k == "voice")
    listener.hangup()
    assert listener.wait_for_event("CALL_CLOSED")
    assert listener.stop() == 0
    heard = [kind(frame) for frame in frames_of(read_wav(heard_by_listener.path()))]
    [length] = runs(heard, "voice")
    assert length >= 1.5 * FRAMES_PER_SECOND
    assert abs(length - voiced) <= 3, (length, voiced)


def test_three_wrong_pins_end_the_editors_call_with_nothing_recorded(
    bulletins_server, softphone, recordings, db_url, prompt_pack,
):
    server = bulletins_server
    editor = softphone("editor")
    cid = call_bulletins(editor, server, "2001")

    def failed_attempts():
        [row] = rows(db_url, f"SELECT failed_attempts, locked_at FROM editors WHERE editor_id = '{EDITOR}'")
        return row

    keys = f"9{EDITOR}#{WRONG_PIN}#"
    for attempt in range(1, 4):
        editor.send_dtmf(keys)
        # Keyed again while "wrong password" plays, once the server counted this one.
        wait_until(
            lambda: failed_attempts()["failed_attempts"] == attempt,
            lambda: f"wrong PIN {attempt} counted: {failed_attempts()}\n{server_output(server.process)}",
        )
        keys = f"{EDITOR}#{WRONG_PIN}#"
    # "Too many attempts", then the server hangs up.
    assert editor.wait_for_event("CALL_CLOSED")
    server.process.wait_for(r"call ended: .*\[cid=" + cid)
    assert editor.stop() == 0

    output = server_output(server.process)
    assert len(re.findall(rf"editor {EDITOR} login on call {cid}: wrong", output)) == 3, output
    assert f"login on call {cid}: ok" not in output
    assert WRONG_PIN not in output
    # Three in one call do not lock the id (five do).
    assert failed_attempts() == {"failed_attempts": 3, "locked_at": None}
    assert rows(db_url, "SELECT * FROM bulletins") == []
    assert recorded_files(recordings) == []

    # The call ended with the "too many attempts" prompt.  The hang-up
    # follows its last frame sent: baresip may not play the last few.
    [received] = [path for path in editor.recordings() if path.endswith("-dec.wav")]
    heard = envelope(read_wav(received))
    told = envelope(read_wav(os.path.join(prompt_pack, "zh", "too-many-attempts.wav")))[:-FRAMES_PER_SECOND // 2]
    assert best_match(heard[-(len(told) + FRAMES_PER_SECOND):], told, within_frames=FRAMES_PER_SECOND) > 0.9
