"""
SIP message parsing speed: a typical INVITE with SDP and a REGISTER, each
parsed N times with parse_message (one datagram, all core header fields
parsed and checked), then written back with to_bytes(), then framed from a
TCP byte stream.

    .venv/bin/python bench/sip_parse.py [--count 20000]

Each figure is the best of five rounds.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from callcenter.sip.message import StreamFramer, make_response, parse_message

SDP = (
    b"v=0\r\n"
    b"o=- 3912402356 3912402356 IN IP4 198.51.100.23\r\n"
    b"s=-\r\n"
    b"c=IN IP4 198.51.100.23\r\n"
    b"t=0 0\r\n"
    b"m=audio 40376 RTP/AVP 0 8 18 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:18 G729/8000\r\n"
    b"a=fmtp:18 annexb=no\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
)

INVITE = (
    b"INVITE sip:95588@pbx.broker.example.com;user=phone SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.23:5060;branch=z9hG4bK-524287-1---6c0d5b0b1a7e3f2c;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"Contact: <sip:13800138000@198.51.100.23:5060;transport=udp>\r\n"
    b'To: <sip:95588@pbx.broker.example.com;user=phone>\r\n'
    b'From: "Investor 13800138000" <sip:13800138000@carrier.example.net>;tag=8f3e1c2a\r\n'
    b"Call-ID: 6b8b4567327b23c6643c986966334873@198.51.100.23\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n"
    b"Supported: replaces, timer, 100rel\r\n"
    b"Session-Expires: 1800\r\n"
    b"User-Agent: CarrierGW 5.1\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: %d\r\n"
    b"\r\n" % len(SDP)
) + SDP

REGISTER = (
    b"REGISTER sip:broker.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.12.41:5060;branch=z9hG4bK-d8754z-2f1c9e3a;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"Contact: <sip:agent1042@10.0.12.41:5060;rinstance=8c5e2a1f>;expires=3600\r\n"
    b"To: <sip:agent1042@broker.example.com>\r\n"
    b"From: <sip:agent1042@broker.example.com>;tag=5a7e91c3\r\n"
    b"Call-ID: NzE2ZjMxNjY1YjQ5ZDI4ODQ2NGI2N2E1MmM3NjE2ZDc.\r\n"
    b"CSeq: 2 REGISTER\r\n"
    b"Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO\r\n"
    b"User-Agent: Softphone 3.8\r\n"
    b'Authorization: Digest username="agent1042",realm="broker.example.com",'
    b'nonce="5f2b1c9e8a7d6e5f",uri="sip:broker.example.com",response="0b6e1e5f0c2d3a4b5c6d7e8f90a1b2c3",'
    b"algorithm=MD5\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def rate(label, count, work, rounds=5):
    # Best of several rounds: the machine is shared, the minimum is the cost.
    elapsed = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        elapsed = min(elapsed, time.perf_counter() - started)
    print(f"{label:<44} {count / elapsed:>10,.0f} messages/s  ({elapsed / count * 1e6:.1f} µs each)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    count = parser.parse_args().count

    for name, packet in (("INVITE with SDP", INVITE), ("REGISTER", REGISTER)):
        parse_message(packet)  # warm up

        def parse(packet=packet):
            for _ in range(count):
                parse_message(packet)

        message = parse_message(packet)

        def write(message=message):
            for _ in range(count):
                message.to_bytes()

        def answer(message=message):
            for _ in range(count):
                make_response(message, 200, to_tag="as1f2e3d").to_bytes()

        def frame(packet=packet):
            framer = StreamFramer()
            stream = packet * 100
            for _ in range(count // 100):
                framer.feed(stream)

        print(f"{name} ({len(packet)} octets), {count} times:")
        rate("  parse_message", count, parse)
        rate("  to_bytes", count, write)
        rate("  make_response(200) + to_bytes", count, answer)
        rate("  StreamFramer.feed (100 per chunk)", count // 100 * 100, frame)


if __name__ == "__main__":
    main()
