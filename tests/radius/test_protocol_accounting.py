"""
The accounting listener (callcenter.radius.protocol), in memory: the
Accounting-Request becomes an AccountingRecord, and the NAS is answered
only once the sink has it (its Deferred fired, or the function given to
its C{keep} called).

The sink here is a list in this file (MemorySink, and KeepingSink told of
records as AccountingSink.keep is), not the real one:
callcenter.radius.accounting is another module, with its own tests.

Most requests are read by the listener's own codec; those with attributes
pyrad decodes by the dictionary (Vendor-Specific, TLVs) by pyrad, as
before: the tests check that both give the same record and answer, and
that the answers are pyrad's byte for byte.
"""

import hashlib
import ipaddress
import struct

import pytest
from pyrad import packet as radius
from pyrad.packet import AcctPacket, AuthPacket
from twisted.internet import defer
from twisted.internet.task import Clock
from zope.interface import implementer

from callcenter.radius.clients import RadiusClient, RadiusClients
from callcenter.radius.dictionary import load_dictionary
from callcenter.radius.interfaces import IAccountingSink
from callcenter.radius.model import AccountingRecord
from callcenter.radius.protocol import AccountingProtocol
from outcomes import CapturedLog

SECRET = b"nas-secret-1"
DICTIONARY = load_dictionary()
NAS = ("192.0.2.10", 40001)


class DatagramTransport:
    def __init__(self):
        self.written = []

    def write(self, data, address):
        self.written.append((data, address))


@implementer(IAccountingSink)
class MemorySink:
    """Keeps records in a list; with C{hold}, leaves the Deferreds for the test."""

    def __init__(self):
        self.records = []
        self.hold = False
        self.held = []

    def record(self, record):
        self.records.append(record)
        if self.hold:
            d = defer.Deferred()
            self.held.append(d)
            return d
        return defer.succeed(None)


@pytest.fixture
def clock():
    clock = Clock()
    clock.advance(1_700_000_100)
    return clock


class KeepingSink(MemorySink):
    """Told of each record by C{keep(record, done, context)}, as AccountingSink.keep does."""

    def keep(self, record, done, context):
        self.record(record).addBoth(done, context)


@pytest.fixture(params=["deferred", "keep"])
def sink(request):
    return MemorySink() if request.param == "deferred" else KeepingSink()


@pytest.fixture
def server(clock, sink):
    clients = RadiusClients([RadiusClient("bras-1", ipaddress.ip_network("192.0.2.0/24"), SECRET)])
    protocol = AccountingProtocol(clients, sink, clock, dictionary=DICTIONARY)
    protocol.makeConnection(DatagramTransport())
    return protocol


def accounting_request(status="Start", secret=SECRET, identifier=5, signed=False, **attributes):
    pkt = AcctPacket(id=identifier, secret=secret, dict=DICTIONARY)
    if status is not None:
        pkt["Acct-Status-Type"] = status
    pkt["Acct-Session-Id"] = attributes.pop("session", "81000001")
    for name, value in attributes.items():
        pkt[name.replace("_", "-")] = value
    if signed:
        pkt.add_message_authenticator()
    return pkt, pkt.RequestPacket()


def the_answer(server, request):
    assert len(server.transport.written) == 1, server.transport.written
    data, address = server.transport.written[0]
    assert address == NAS
    reply = request.CreateReply(packet=data)
    assert request.VerifyReply(reply, data)
    assert reply.code == radius.AccountingResponse
    assert data[20] == 80, "Message-Authenticator must be the first attribute"
    return reply


def count(server, outcome):
    return server.metrics.value("acct", outcome)


def test_a_start_becomes_a_record(server, sink):
    request, datagram = accounting_request(
        "Start",
        User_Name="investor",
        NAS_IP_Address="10.1.0.1",
        NAS_Identifier="bras-1.sz",
        NAS_Port=17,
        Framed_IP_Address="100.64.0.9",
        Calling_Station_Id="00-11-22-33-44-55",
        Event_Timestamp=1_700_000_000,
    )
    server.datagramReceived(datagram, NAS)
    the_answer(server, request)
    assert sink.records == [
        AccountingRecord(
            client="bras-1",
            status_type="Start",
            session_id="81000001",
            user_name="investor",
            nas_ip="10.1.0.1",
            nas_identifier="bras-1.sz",
            nas_port=17,
            framed_ip="100.64.0.9",
            calling_station_id="00-11-22-33-44-55",
            event_time=1_700_000_000.0,
        )
    ]
    assert count(server, "accounted") == 1


def test_the_answer_waits_for_the_sink(server, sink):
    sink.hold = True
    request, datagram = accounting_request("Interim-Update", Acct_Session_Time=60)
    server.datagramReceived(datagram, NAS)
    assert server.transport.written == []
    server.datagramReceived(datagram, NAS)  # the NAS retries meanwhile: not recorded twice
    assert len(sink.records) == 1
    sink.held[0].callback(None)
    the_answer(server, request)


def test_a_failing_sink_means_no_answer_and_the_retry_records_again(server, sink):
    sink.hold = True
    request, datagram = accounting_request("Stop")
    with CapturedLog() as log:
        server.datagramReceived(datagram, NAS)
        sink.held[0].errback(RuntimeError("disk full"))
    assert server.transport.written == []
    assert count(server, "sink_failed") == 1
    assert log.formats("not answered, the NAS will retry")
    sink.hold = False
    server.datagramReceived(datagram, NAS)
    the_answer(server, request)
    assert len(sink.records) == 2


class Raising:
    def record(self, record):
        raise RuntimeError("bug")


class RaisingKeeper:
    def keep(self, record, done, context):
        raise RuntimeError("bug")


@pytest.mark.parametrize("kind", [Raising, RaisingKeeper])
def test_a_sink_raising_costs_only_the_request(clock, kind):
    clients = RadiusClients([RadiusClient("bras-1", ipaddress.ip_network("192.0.2.0/24"), SECRET)])
    server = AccountingProtocol(clients, kind(), clock, dictionary=DICTIONARY)
    server.makeConnection(DatagramTransport())
    with CapturedLog():
        server.datagramReceived(accounting_request()[1], NAS)
    assert server.transport.written == [] and count(server, "sink_failed") == 1


def test_a_retransmission_after_the_answer_gets_it_again(server, sink):
    _, datagram = accounting_request("Interim-Update")
    server.datagramReceived(datagram, NAS)
    server.datagramReceived(datagram, NAS)
    assert len(sink.records) == 1
    (first, _), (second, _) = server.transport.written
    assert first == second
    assert count(server, "duplicate_answered") == 1


def test_gigawords_count_the_wraps_of_the_octet_counters(server, sink):
    _, datagram = accounting_request(
        "Stop",
        Acct_Input_Octets=5,
        Acct_Input_Gigawords=2,
        Acct_Output_Gigawords=1,
        Acct_Input_Packets=7,
        Acct_Output_Packets=8,
        Acct_Session_Time=3600,
        Acct_Terminate_Cause="Idle-Timeout",
    )
    server.datagramReceived(datagram, NAS)
    [record] = sink.records
    assert record.input_octets == 2 * 2**32 + 5
    assert record.output_octets == 2**32
    assert (record.input_packets, record.output_packets, record.session_time) == (7, 8, 3600)
    assert record.terminate_cause == "Idle-Timeout"


def test_no_counters_means_none(server, sink):
    server.datagramReceived(accounting_request("Start")[1], NAS)
    [record] = sink.records
    assert record.input_octets is None and record.output_octets is None and record.event_time is None


def test_the_event_time_is_the_timestamp_less_the_delay(server, sink, clock):
    server.datagramReceived(accounting_request(Event_Timestamp=1_700_000_000, Acct_Delay_Time=30)[1], NAS)
    server.datagramReceived(accounting_request(identifier=6, Acct_Delay_Time=30)[1], NAS)
    first, second = sink.records
    assert first.event_time == 1_699_999_970.0
    assert second.event_time == clock.seconds() - 30


@pytest.mark.parametrize(
    "status, expected",
    [("Accounting-On", "Accounting-On"), ("Accounting-Off", "Accounting-Off"), (15, "15")],
)
def test_status_types_by_name_or_number(server, sink, status, expected):
    server.datagramReceived(accounting_request(status)[1], NAS)
    assert sink.records[0].status_type == expected


def test_no_status_type_is_malformed(server, sink):
    server.datagramReceived(accounting_request(None)[1], NAS)
    assert sink.records == [] and server.transport.written == []
    assert count(server, "malformed") == 1


def test_a_wrong_secret_is_dropped(server, sink):
    server.datagramReceived(accounting_request(secret=b"wrong")[1], NAS)
    assert sink.records == [] and server.transport.written == []
    assert count(server, "bad_authenticator") == 1


def test_a_changed_attribute_breaks_the_request_authenticator(server, sink):
    _, datagram = accounting_request(Acct_Session_Time=60)
    server.datagramReceived(datagram.replace(b"\x00\x00\x00\x3c", b"\x00\x00\x00\x3d"), NAS)
    assert sink.records == [] and count(server, "bad_authenticator") == 1


def test_a_message_authenticator_is_checked_when_present(server, sink):
    request, datagram = accounting_request(signed=True)
    server.datagramReceived(datagram, NAS)
    the_answer(server, request)
    # Signed with another secret but the Request Authenticator recomputed:
    # only the Message-Authenticator gives it away.
    forged = AcctPacket(id=9, secret=b"wrong", dict=DICTIONARY)
    forged["Acct-Status-Type"] = "Start"
    forged.add_message_authenticator()
    forged.RequestPacket()
    forged.secret = SECRET
    forged.message_authenticator = False
    server.datagramReceived(forged.RequestPacket(), NAS)
    assert len(sink.records) == 1 and count(server, "bad_authenticator") == 1


def test_status_server_on_the_accounting_port(server, sink):
    request = AcctPacket(radius.StatusServer, id=2, secret=SECRET, dict=DICTIONARY)
    request.add_message_authenticator()
    datagram = request.RequestPacket()
    server.datagramReceived(datagram, NAS)
    data, _ = server.transport.written[0]
    reply = request.CreateReply(packet=data)
    # RFC 5997 §3: signed with the Request Authenticator, and pyrad checks it so.
    assert request.VerifyReply(reply, data, enforce_ma=True)
    assert reply.code == radius.AccountingResponse and data[20] == 80
    assert sink.records == [] and count(server, "status") == 1


def test_an_access_request_on_the_accounting_port_is_dropped(server, sink):
    request = AuthPacket(id=1, secret=SECRET, dict=DICTIONARY)
    request["User-Name"] = "investor"
    request.add_message_authenticator()
    server.datagramReceived(request.RequestPacket(), NAS)
    assert server.transport.written == [] and count(server, "unknown_code") == 1


# -- the listener's own codec, and pyrad where it decodes by the dictionary


def raw_request(attributes, secret=SECRET, identifier=5):
    """An Accounting-Request of C{attributes} (encoded), its Request Authenticator made (RFC 2866 §3)."""
    head = struct.pack("!BBH", radius.AccountingRequest, identifier, 20 + len(attributes))
    return head + hashlib.md5(head + bytes(16) + attributes + secret).digest() + attributes


def pyrads_answer(request):
    reply = request.CreateReply()  # the Identifier, Request Authenticator and Proxy-States
    reply.add_message_authenticator()
    return reply.ReplyPacket()


@pytest.mark.parametrize("proxy_states", [[], [b"hop-1", b"\x00binary"]])
@pytest.mark.parametrize("signed", [False, True])
def test_the_answer_is_pyrads_byte_for_byte(server, sink, signed, proxy_states):
    request, datagram = accounting_request(
        "Interim-Update", signed=signed, Acct_Session_Time=60, **({"Proxy_State": proxy_states} if proxy_states else {})
    )
    server.datagramReceived(datagram, NAS)
    the_answer(server, request)
    assert server.transport.written[0][0] == pyrads_answer(request)
    assert len(sink.records) == 1


def test_vendor_specific_attributes_give_the_record_and_pyrads_answer(server, sink):
    request, plain = accounting_request("Stop", Acct_Session_Time=60, Proxy_State=b"hop")
    # Vendor 2011 (Huawei), its attribute 1: not read, as pyrad did not.
    vendor = bytes([26, 12]) + struct.pack("!I", 2011) + bytes([1, 6]) + b"\x00\x00\x00\x07"
    with_vendor = raw_request(plain[20:] + vendor)
    server.datagramReceived(plain, NAS)
    server.datagramReceived(with_vendor, ("192.0.2.10", 40002))
    first, second = sink.records
    assert first == second
    decoded = AcctPacket(secret=SECRET, dict=DICTIONARY, packet=with_vendor)
    (answer_plain, _), (answer_vendor, _) = server.transport.written
    assert answer_plain == pyrads_answer(request)
    assert answer_vendor == pyrads_answer(decoded)
    assert count(server, "accounted") == 2


@pytest.fixture
def tlv_server(clock, sink, tmp_path):
    dictionary = tmp_path / "dictionary.test"
    dictionary.write_text("ATTRIBUTE\tTest-Group\t241\ttlv\nATTRIBUTE\tTest-Group-Member\t241.1\tinteger\n")
    clients = RadiusClients([RadiusClient("bras-1", ipaddress.ip_network("192.0.2.0/24"), SECRET)])
    protocol = AccountingProtocol(clients, sink, clock, dictionary=load_dictionary([str(dictionary)]))
    protocol.makeConnection(DatagramTransport())
    return protocol


def test_a_tlv_is_not_read_even_one_the_dictionary_would_refuse(tlv_server, sink):
    # The listener's pyrad packet had no dictionary: TLVs were kept raw,
    # whatever their sub-attributes.  The record does not read them.
    _, datagram = accounting_request("Start")
    good = raw_request(datagram[20:] + bytes([241, 8, 1, 6]) + b"\x00\x00\x00\x05")
    odd = raw_request(datagram[20:] + bytes([241, 8, 1, 7]) + b"\x00\x00\x00\x05", identifier=6)
    tlv_server.datagramReceived(good, NAS)
    tlv_server.datagramReceived(odd, NAS)
    assert [record.status_type for record in sink.records] == ["Start", "Start"]
    assert count(tlv_server, "accounted") == 2


def test_an_integer_of_the_wrong_size_is_malformed(server, sink):
    _, datagram = accounting_request("Start")
    server.datagramReceived(raw_request(datagram[20:] + bytes([5, 5]) + b"\x00\x00\x01"), NAS)  # NAS-Port, 3 octets
    assert sink.records == [] and server.transport.written == [] and count(server, "malformed") == 1


def test_two_message_authenticators_are_refused(server, sink):
    _, datagram = accounting_request("Start")
    signature = bytes([80, 18]) + bytes(16)
    server.datagramReceived(raw_request(datagram[20:] + signature + signature), NAS)
    assert sink.records == [] and count(server, "bad_authenticator") == 1


def test_a_message_authenticator_of_the_wrong_length_is_refused(server, sink):
    _, datagram = accounting_request("Start")
    server.datagramReceived(raw_request(datagram[20:] + bytes([80, 10]) + bytes(8)), NAS)
    assert sink.records == [] and count(server, "bad_authenticator") == 1


def test_an_unknown_terminate_cause_is_its_number(server, sink):
    server.datagramReceived(accounting_request("Stop", Acct_Terminate_Cause=99)[1], NAS)
    assert sink.records[0].terminate_cause == "99"
