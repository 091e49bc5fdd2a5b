"""
What one core does with the media primitives, per 20 ms frame of 8 kHz
audio (160 samples): G.711 encode, decode and transcode, RTP header build
and parse, RFC 4733 event parse, and in-band DTMF detection.

    .venv/bin/python bench/media_primitives.py [--seconds 0.5]

Each figure is the best of five runs of about C{--seconds} each.
"""

import argparse
import math
import struct
import time

from callcenter.media import dtmf, g711, rtp, tones

FRAME_SAMPLES = 160


def per_second(function, argument, seconds):
    """Best calls per second of C{function(argument)} over five runs."""
    count = 1
    while True:
        started = time.perf_counter()
        for _ in range(count):
            function(argument)
        elapsed = time.perf_counter() - started
        if elapsed >= seconds / 5:
            break
        count *= 2
    best = elapsed
    for _ in range(4):
        started = time.perf_counter()
        for _ in range(count):
            function(argument)
        best = min(best, time.perf_counter() - started)
    return count / best


def vowel_frames(seconds=1.0, pitch_hz=120, formants_hz=(730, 1090, 2440)):
    """A sustained vowel: harmonics of a gliding pitch shaped by formants."""
    count = int(8000 * seconds)
    harmonics = range(1, int(3800 // pitch_hz))
    weights = [sum(1 / (1 + ((k * pitch_hz - f) / 120) ** 2) for f in formants_hz) for k in harmonics]
    scale = 12000 / sum(weights)
    phase, values = 0.0, []
    for n in range(count):
        phase += 2 * math.pi * pitch_hz * (1 + 0.03 * math.sin(2 * math.pi * 5 * n / 8000)) / 8000
        values.append(round(scale * sum(w * math.sin(k * phase) for k, w in zip(harmonics, weights))))
    pcm = struct.pack(f"<{count}h", *values)
    step = 2 * FRAME_SAMPLES
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


def detector_per_frame(frames, seconds):
    """Frames per second through one detector, cycling C{frames}."""
    detector = dtmf.GoertzelDetector()
    frames = list(frames)
    index = iter(range(1 << 62))

    def feed(_):
        detector.feed(frames[next(index) % len(frames)])

    return per_second(feed, None, seconds)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=0.5)
    seconds = parser.parse_args().seconds

    vowel = vowel_frames()
    linear = vowel[10]
    ulaw = g711.linear_to_ulaw(linear)
    alaw = g711.linear_to_alaw(linear)
    rows = []
    for name, function, argument, frame_bytes, what in [
        ("linear_to_ulaw", g711.linear_to_ulaw, linear, 2 * FRAME_SAMPLES, "linear in"),
        ("linear_to_alaw", g711.linear_to_alaw, linear, 2 * FRAME_SAMPLES, "linear in"),
        ("ulaw_to_linear", g711.ulaw_to_linear, ulaw, 2 * FRAME_SAMPLES, "linear out"),
        ("alaw_to_linear", g711.alaw_to_linear, alaw, 2 * FRAME_SAMPLES, "linear out"),
        ("ulaw_to_alaw", g711.ulaw_to_alaw, ulaw, FRAME_SAMPLES, "μ-law in"),
    ]:
        rate = per_second(function, argument, seconds)
        rows.append(
            (f"G.711 {name}", rate, f"{1e6 / rate:.2f} µs, {rate * frame_bytes / 1e6:.0f} MB/s {what}")
        )

    packet = rtp.build_header(False, 0, 1234, 5678, 0xDEADBEEF) + ulaw
    rows.append(
        (
            "RTP build_header",
            per_second(lambda _: rtp.build_header(False, 0, 1234, 5678, 1), None, seconds),
            "",
        )
    )
    rows.append(("RTP parse (12 + 160 bytes)", per_second(rtp.parse, packet, seconds), ""))
    sender = rtp.RTPSender(1, 0)
    rows.append(("RTPSender.packet", per_second(sender.packet, ulaw, seconds), ""))
    event = dtmf.TelephoneEvent(5, True, 10, 800).to_bytes()
    rows.append(("TelephoneEvent.parse", per_second(dtmf.TelephoneEvent.parse, event, seconds), ""))

    for name, frames in [
        ("silence", [bytes(2 * FRAME_SAMPLES)]),
        ("sustained vowel", vowel),
        ("DTMF tone", tones.dtmf_tone("5", duration_ms=1000)),
    ]:
        rate = detector_per_frame(frames, seconds)
        rows.append((f"Goertzel detector, {name}", rate, f"{1e6 / rate:.1f} µs per 20 ms frame"))

    width = max(len(name) for name, _, _ in rows)
    print(f"{'primitive (160-sample frames)':<{width}}  {'per second':>12}  each")
    for name, rate, note in rows:
        print(f"{name:<{width}}  {rate:>12,.0f}  {note or f'{1e6 / rate:.2f} µs'}")


if __name__ == "__main__":
    main()
