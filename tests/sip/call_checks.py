"""
What end-to-end call tests check: the audio a softphone heard (baresip's
sndfile dumps, 8 kHz 16-bit mono) and the rows the server wrote.

Not a test module.  Tests import it as ``from call_checks import ...``.
"""

import math
import os
import struct
import time
import wave

import sqlalchemy as sa

from processes import DEADLINE

RATE = 8000
# 20 ms, as the server sends audio.
FRAME = 160


def rows(db_url, query):
    """The rows C{query} returns from the server's database, as dicts."""
    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(sa.text(query))]
    finally:
        engine.dispose()


def wait_until(condition, what, timeout=DEADLINE, interval=0.05):
    """
    Poll C{condition} until it returns something true, which is returned;
    fail after C{timeout}, saying C{what} (a string, or a callable giving
    one then: the state that explains the failure).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what() if callable(what) else what}")
        time.sleep(interval)


def server_output(process, settle=0.2):
    """
    Everything the server (a L{processes.ServerProcess}) printed so far:
    its lines are read only while it is waited for, here for a line that
    never comes.
    """
    try:
        process.wait_for(r"(?!)", timeout=settle)
    except AssertionError:
        pass
    return process.output


def write_wav(path, samples):
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(RATE)
        f.writeframes(struct.pack(f"<{len(samples)}h", *samples))
    return str(path)


def sine(frequency, seconds, amplitude=8000):
    return [int(amplitude * math.sin(2 * math.pi * frequency * n / RATE)) for n in range(int(RATE * seconds))]


def read_wav(path):
    with wave.open(path) as f:
        assert (f.getframerate(), f.getnchannels(), f.getsampwidth()) == (RATE, 1, 2)
        data = f.readframes(f.getnframes())
    return list(struct.unpack(f"<{len(data) // 2}h", data))


def power_at(samples, frequency):
    """Goertzel: the signal's power at one frequency."""
    coefficient = 2 * math.cos(2 * math.pi * frequency / RATE)
    previous = before = 0.0
    for sample in samples:
        previous, before = sample + coefficient * previous - before, previous
    return previous * previous + before * before - coefficient * previous * before


def dominant_frequency(samples):
    return max(range(200, 2000, 10), key=lambda f: power_at(samples, f))


def envelope(samples, frame=FRAME):
    """RMS per 20 ms frame."""
    return [
        math.sqrt(sum(s * s for s in samples[i:i + frame]) / frame) for i in range(0, len(samples) - frame + 1, frame)
    ]


def correlation(a, b):
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    covariance = sum((x - mean_a) * (y - mean_b) for x, y in zip(a, b))
    spread = math.sqrt(sum((x - mean_a) ** 2 for x in a) * sum((y - mean_b) ** 2 for y in b))
    return covariance / spread if spread else 0.0


def best_match(heard, prompt, within_frames=150):
    """The best correlation of the prompt's envelope with the heard one's, starting in the first 3 s."""
    return max(
        correlation(heard[offset:offset + len(prompt)], prompt)
        for offset in range(min(within_frames, len(heard) - len(prompt)))
    )


def tone_share(samples, frequency):
    """
    The share of C{samples}' energy at C{frequency} (Goertzel): about 1
    for a pure tone at a frequency on a bin of their length (700 Hz and
    1 kHz are, for 20 ms at 8 kHz), near 0 for speech or silence.
    """
    energy = sum(sample * sample for sample in samples)
    if not energy:
        return 0.0
    return 2 * power_at(samples, frequency) / (len(samples) * energy)


def is_tone(frame, frequency, min_rms=300):
    """Whether the 20 ms C{frame} is C{frequency} and little else, and audible."""
    return rms(frame) >= min_rms and tone_share(frame, frequency) > 0.6


def rms(samples):
    return math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0


def runs_of(flags, max_gap=0):
    """
    (first index, length) of each run of true C{flags}; a run goes on
    across up to C{max_gap} false ones in a row (a frame lost or damaged
    on the way), which count in its length.
    """
    found = []
    last = None
    for i, flag in enumerate(flags):
        if not flag:
            continue
        if last is not None and i - last - 1 <= max_gap:
            start = found[-1][0]
            found[-1] = (start, i - start + 1)
        else:
            found.append((i, 1))
        last = i
    return found


class Heard:
    """
    What a baresip has received so far in its only call, read while the
    call goes on: its sndfile module writes the decoded audio (the
    ``-dec.wav`` file) packet by packet as it comes, with the header's
    sizes filled in only when the call ends.  Only audio received is
    there: while the far end sends nothing (silence suppression), the file
    does not grow.  Frames are classified once, as they come, by
    C{classify}, a function of a 20 ms frame.
    """

    def __init__(self, phone, classify):
        self.phone = phone
        self.classify = classify
        self.classes = []

    def path(self):
        """The decoded audio's file, once the call's audio has started (else None)."""
        found = [path for path in self.phone.recordings() if path.endswith("-dec.wav")]
        assert len(found) <= 1, found
        return found[0] if found else None

    def update(self):
        """The classes of the frames heard so far."""
        path = self.path()
        if path is None:
            return self.classes
        with open(path, "rb") as f:
            data = f.read()
        # RIFF, then chunks until "data"; the data runs to the end of the file.
        offset = 12
        while offset + 8 <= len(data) and data[offset:offset + 4] != b"data":
            offset += 8 + struct.unpack("<I", data[offset + 4:offset + 8])[0]
        audio = data[offset + 8:]
        done = len(self.classes) * FRAME * 2
        while len(audio) - done >= FRAME * 2:
            frame = struct.unpack(f"<{FRAME}h", audio[done:done + FRAME * 2])
            self.classes.append(self.classify(frame))
            done += FRAME * 2
        return self.classes

    def wait_for_run(self, min_frames, pick=bool, max_gap=2, ended_by=5, timeout=DEADLINE):
        """
        Wait until the phone has heard C{min_frames} frames in a row whose
        class C{pick} finds true (see L{runs_of} for C{max_gap}), followed
        by C{ended_by} others (the run is over); returns the run's (first
        frame, length).
        """

        def finished_run():
            flags = [pick(found) for found in self.update()]
            for start, length in runs_of(flags, max_gap):
                if length >= min_frames and len(flags) >= start + length + ended_by:
                    return start, length
            return None

        def heard():
            flags = [pick(found) for found in self.classes]
            return (
                f"a run of {min_frames} frames heard by {self.phone.directory}; "
                f"runs (first frame, length) in {len(flags)} frames: {runs_of(flags, max_gap)}"
            )

        return wait_until(finished_run, heard, timeout)
