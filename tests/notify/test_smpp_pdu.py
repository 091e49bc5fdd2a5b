"""
The SMPP 3.4 codec: every body we send or receive survives a round trip,
the hot-path submit_sm encoder makes the same octets as the general one,
known octets from the specification's layout decode as they should, and
bodies that do not fit their fields raise MalformedPDU.
"""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcenter.notify.smpp import pdu
from callcenter.notify.smpp.pdu import (
    BIND_TRANSCEIVER,
    DELIVER_SM,
    SUBMIT_SM,
    SUBMIT_SM_RESP,
    Bind,
    MalformedPDU,
    ShortMessage,
    SubmitEncoder,
)


def split(data):
    """(command_id, status, sequence, body) of one whole PDU, checking its length."""
    length, command_id, status, sequence = pdu.HEADER.unpack_from(data)
    assert length == len(data)
    return command_id, status, sequence, data[16:]


def test_header_only_pdus():
    assert pdu.header(pdu.ENQUIRE_LINK, 0, 7) == bytes.fromhex("00000010 00000015 00000000 00000007")
    assert pdu.header(pdu.GENERIC_NACK, pdu.ESME_RINVCMDLEN, 9) == bytes.fromhex(
        "00000010 80000000 00000002 00000009")


def test_bind_transceiver_octets_and_round_trip():
    data = pdu.encode_bind(BIND_TRANSCEIVER, 1, Bind("callcenter", "secret", "CC"))
    command_id, status, sequence, body = split(data)
    assert (command_id, status, sequence) == (BIND_TRANSCEIVER, 0, 1)
    # system_id, password, system_type, interface_version 0x34, ton, npi, empty address_range.
    assert body == b"callcenter\0secret\0CC\0\x34\x00\x00\0"
    assert pdu.decode_bind(body) == Bind("callcenter", "secret", "CC")


def test_bind_limits_are_checked_when_encoding():
    with pytest.raises(ValueError):
        pdu.encode_bind(BIND_TRANSCEIVER, 1, Bind("callcenter", "ninechars"))
    with pytest.raises(ValueError):
        pdu.encode_bind(BIND_TRANSCEIVER, 1, Bind("a-system-id-of-16", "pw"))
    with pytest.raises(ValueError):
        pdu.encode_bind(BIND_TRANSCEIVER, 1, Bind("密码", "pw"))


def test_bind_response_with_and_without_body():
    assert pdu.decode_bind_response(b"SMSC\0" + bytes.fromhex("0210000134")) == ("SMSC", ((0x0210, b"\x34"),))
    assert pdu.decode_bind_response(b"") == ("", ())


short_messages = st.builds(
    ShortMessage,
    destination_addr=st.text("0123456789", max_size=20),
    short_message=st.binary(max_size=254),
    dest_addr_ton=st.integers(0, 6),
    dest_addr_npi=st.integers(0, 18),
    source_addr=st.text("0123456789ABCxyz", max_size=20),
    source_addr_ton=st.integers(0, 6),
    source_addr_npi=st.integers(0, 18),
    service_type=st.text("ABCDEFG", max_size=5),
    esm_class=st.integers(0, 255),
    registered_delivery=st.integers(0, 31),
    data_coding=st.integers(0, 255),
    tlvs=st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=40)), max_size=4).map(tuple),
)


@given(short_messages, st.sampled_from([SUBMIT_SM, DELIVER_SM]), st.integers(1, 0x7FFFFFFF))
def test_short_message_round_trip(sm, command_id, sequence):
    command, status, seq, body = split(pdu.encode_short_message(command_id, sequence, sm))
    assert (command, status, seq) == (command_id, 0, sequence)
    assert pdu.decode_short_message(body) == sm


@given(short_messages.map(lambda sm: ShortMessage(
    destination_addr=sm.destination_addr, short_message=sm.short_message, dest_addr_ton=sm.dest_addr_ton,
    dest_addr_npi=sm.dest_addr_npi, source_addr=sm.source_addr, source_addr_ton=sm.source_addr_ton,
    source_addr_npi=sm.source_addr_npi, service_type=sm.service_type, esm_class=sm.esm_class,
    registered_delivery=sm.registered_delivery, data_coding=sm.data_coding,
)), st.integers(1, 0x7FFFFFFF))
def test_submit_encoder_matches_the_general_encoder(sm, sequence):
    encoder = SubmitEncoder(sm.source_addr, sm.source_addr_ton, sm.source_addr_npi, sm.service_type,
                            sm.registered_delivery)
    fast = encoder.encode(sequence, sm.dest_addr_ton, sm.dest_addr_npi, sm.destination_addr.encode(), sm.esm_class,
                          sm.data_coding, sm.short_message)
    assert fast == pdu.encode_short_message(SUBMIT_SM, sequence, sm)


def test_submit_sm_field_layout():
    """§4.4.1 field by field, for one submit_sm written out by hand."""
    data = SubmitEncoder("10690", 0, 1, "", 1).encode(5, 1, 1, b"8613800138000", 0x40, 8, b"\x4f\x60")
    expected = (
        b"\0"  # service_type
        + b"\x00\x01" + b"10690\0"  # source TON, NPI, address
        + b"\x01\x01" + b"8613800138000\0"  # destination TON, NPI, address
        + b"\x40\x00\x00"  # esm_class, protocol_id, priority_flag
        + b"\0\0"  # schedule_delivery_time, validity_period
        + b"\x01\x00\x08\x00"  # registered_delivery, replace_if_present, data_coding, sm_default_msg_id
        + b"\x02\x4f\x60"  # sm_length, short_message
    )
    assert data == struct.pack(">IIII", 16 + len(expected), SUBMIT_SM, 0, 5) + expected


def test_message_id_responses():
    data = pdu.encode_message_id_response(SUBMIT_SM_RESP, 0, 3, "abc-123")
    command, status, sequence, body = split(data)
    assert (command, status, sequence, pdu.decode_message_id(body)) == (SUBMIT_SM_RESP, 0, 3, "abc-123")
    # §4.4.2: no body after an error; and a lenient read of an id without its NUL.
    assert pdu.decode_message_id(b"") == ""
    assert pdu.decode_message_id(b"X1") == "X1"


def test_tlvs_are_found_by_tag():
    tlvs = pdu.decode_tlvs(bytes.fromhex("001e0004") + b"abc\0" + bytes.fromhex("0427000102"), 0)
    assert pdu.tlv_value(tlvs, pdu.RECEIPTED_MESSAGE_ID) == b"abc\0"
    assert pdu.tlv_value(tlvs, pdu.MESSAGE_STATE) == b"\x02"
    assert pdu.tlv_value(tlvs, pdu.NETWORK_ERROR_CODE) is None


def deliver_body(**fields):
    return split(pdu.encode_short_message(DELIVER_SM, 1, ShortMessage(destination_addr="10690", **fields)))[3]


@pytest.mark.parametrize("cut", [1, 3, 10, 20, 25])
def test_truncated_bodies_are_malformed(cut):
    body = deliver_body(short_message=b"hello", tlvs=((pdu.MESSAGE_STATE, b"\x02"),))
    with pytest.raises(MalformedPDU):
        pdu.decode_short_message(body[:cut])


def test_unterminated_c_string_is_malformed():
    with pytest.raises(MalformedPDU, match="service_type"):
        pdu.decode_short_message(b"CMT")
    with pytest.raises(MalformedPDU, match="system_id"):
        pdu.decode_bind(b"callcenter")


def test_sm_length_past_the_end_is_malformed():
    body = deliver_body(short_message=b"hello")
    with pytest.raises(MalformedPDU, match="sm_length"):
        pdu.decode_short_message(body[:-1])


def test_tlv_running_past_the_end_is_malformed():
    body = deliver_body(short_message=b"hi") + bytes.fromhex("001e0010") + b"short"
    with pytest.raises(MalformedPDU, match="TLV"):
        pdu.decode_short_message(body)
    with pytest.raises(MalformedPDU, match="TLV header"):
        pdu.decode_short_message(deliver_body(short_message=b"hi") + b"\x04")


def test_status_names():
    assert pdu.status_name(0x58) == "ESME_RTHROTTLED"
    assert pdu.status_name(0x0E) == "ESME_RINVPASWD"
    assert pdu.status_name(0x4242) == "0x00004242"


def test_short_message_longer_than_254_is_refused():
    with pytest.raises(ValueError):
        pdu.encode_short_message(SUBMIT_SM, 1, ShortMessage(destination_addr="1", short_message=bytes(255)))
