"""
SMPP 3.4 PDUs: the header, the bodies an ESME bound as a transceiver sends
and receives, and optional parameters (TLVs).  Section numbers are those
of the SMPP v3.4 specification, issue 1.2.

Every PDU is a 16-octet header (§3.2: command_length, command_id,
command_status, sequence_number, big-endian 32-bit integers) and a body of
fixed-size integers and C-octet strings (ASCII, NUL-terminated), then TLVs
(§3.2.4: 16-bit tag, 16-bit length, value).

Both directions of each body are here (the tests check every round trip
and play the SMSC with them); the submit_sm the ESME sends for every
segment has its own encoder, L{SubmitEncoder}, which does the least work
per PDU.  Decoding raises L{MalformedPDU} for anything that does not fit
its command_length.
"""

import struct
from dataclasses import dataclass

HEADER = struct.Struct(">IIII")
HEADER_LENGTH = 16
# A submit_sm or deliver_sm is at most a few hundred octets (short_message
# is 254 at most, §5.2.21); only a message_payload TLV (§5.3.2.32, up to
# 64K) is longer.  Anything past this cap means the framing is lost.
MAX_COMMAND_LENGTH = 68 * 1024
_TLV_HEADER = struct.Struct(">HH")
_SUBMIT_TAIL = struct.Struct(">11B")

# command_id (§5.1.2.1)
GENERIC_NACK = 0x80000000
BIND_RECEIVER = 0x00000001
BIND_TRANSMITTER = 0x00000002
QUERY_SM = 0x00000003
SUBMIT_SM = 0x00000004
DELIVER_SM = 0x00000005
UNBIND = 0x00000006
REPLACE_SM = 0x00000007
CANCEL_SM = 0x00000008
BIND_TRANSCEIVER = 0x00000009
OUTBIND = 0x0000000B
ENQUIRE_LINK = 0x00000015
SUBMIT_MULTI = 0x00000021
ALERT_NOTIFICATION = 0x00000102
DATA_SM = 0x00000103
RESPONSE = 0x80000000
BIND_TRANSCEIVER_RESP = BIND_TRANSCEIVER | RESPONSE
SUBMIT_SM_RESP = SUBMIT_SM | RESPONSE
DELIVER_SM_RESP = DELIVER_SM | RESPONSE
UNBIND_RESP = UNBIND | RESPONSE
ENQUIRE_LINK_RESP = ENQUIRE_LINK | RESPONSE

COMMAND_NAMES = {
    GENERIC_NACK: "generic_nack",
    BIND_RECEIVER: "bind_receiver",
    BIND_TRANSMITTER: "bind_transmitter",
    QUERY_SM: "query_sm",
    SUBMIT_SM: "submit_sm",
    DELIVER_SM: "deliver_sm",
    UNBIND: "unbind",
    REPLACE_SM: "replace_sm",
    CANCEL_SM: "cancel_sm",
    BIND_TRANSCEIVER: "bind_transceiver",
    OUTBIND: "outbind",
    ENQUIRE_LINK: "enquire_link",
    SUBMIT_MULTI: "submit_multi",
    ALERT_NOTIFICATION: "alert_notification",
    DATA_SM: "data_sm",
}
COMMAND_NAMES.update({
    command | RESPONSE: f"{name}_resp" for command, name in list(COMMAND_NAMES.items()) if command != GENERIC_NACK
})

# command_status (§5.1.3)
ESME_ROK = 0x00
ESME_RINVMSGLEN = 0x01
ESME_RINVCMDLEN = 0x02
ESME_RINVCMDID = 0x03
ESME_RINVBNDSTS = 0x04
ESME_RALYBND = 0x05
ESME_RSYSERR = 0x08
ESME_RINVSRCADR = 0x0A
ESME_RINVDSTADR = 0x0B
ESME_RINVMSGID = 0x0C
ESME_RBINDFAIL = 0x0D
ESME_RINVPASWD = 0x0E
ESME_RINVSYSID = 0x0F
ESME_RMSGQFUL = 0x14
ESME_RINVESMCLASS = 0x43
ESME_RSUBMITFAIL = 0x45
ESME_RINVSRCTON = 0x48
ESME_RINVSRCNPI = 0x49
ESME_RINVDSTTON = 0x50
ESME_RINVDSTNPI = 0x51
ESME_RINVSYSTYP = 0x53
ESME_RTHROTTLED = 0x58
ESME_RX_T_APPN = 0x64
ESME_RX_P_APPN = 0x65
ESME_RX_R_APPN = 0x66
ESME_RINVOPTPARSTREAM = 0xC0
ESME_RUNKNOWNERR = 0xFF

STATUS_NAMES = {value: name for name, value in globals().items() if name.startswith("ESME_R")}


def status_name(status):
    return STATUS_NAMES.get(status, f"0x{status:08X}")


# TLV tags (§5.3.2)
SC_INTERFACE_VERSION = 0x0210
RECEIPTED_MESSAGE_ID = 0x001E
NETWORK_ERROR_CODE = 0x0423
MESSAGE_PAYLOAD = 0x0424
MESSAGE_STATE = 0x0427

# message_state values (§5.2.28)
MESSAGE_STATES = {
    1: "ENROUTE",
    2: "DELIVERED",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIVERABLE",
    6: "ACCEPTED",
    7: "UNKNOWN",
    8: "REJECTED",
}

# esm_class (§5.2.12)
ESM_UDHI = 0x40
ESM_TYPE_MASK = 0x3C
ESM_DELIVERY_RECEIPT = 0x04
ESM_INTERMEDIATE_NOTIFICATION = 0x20

# data_coding (§5.2.19)
DATA_CODING_DEFAULT = 0x00  # the SMSC's default alphabet: GSM 03.38 here
DATA_CODING_LATIN1 = 0x03
DATA_CODING_UCS2 = 0x08

INTERFACE_VERSION = 0x34

# Longest values of the C-octet strings we send, without the NUL (§4).
MAX_SYSTEM_ID = 15
MAX_PASSWORD = 8
MAX_SYSTEM_TYPE = 12
MAX_SERVICE_TYPE = 5
MAX_ADDRESS = 20
MAX_SHORT_MESSAGE = 254


class MalformedPDU(ValueError):
    """A PDU whose body does not match its command_length or its fields' rules."""


def cstring(value, limit, what="value"):
    """C{value} (ASCII text) as a C-octet string, checked against its field's limit."""
    data = value.encode("ascii")
    if len(data) > limit or b"\0" in data:
        raise ValueError(f"{what} {value!r}: at most {limit} ASCII characters, no NUL")
    return data + b"\0"


def read_cstring(data, offset, what):
    """(text, offset past the NUL) of the C-octet string at C{offset}."""
    end = data.find(b"\0", offset)
    if end < 0:
        raise MalformedPDU(f"{what} is not NUL-terminated")
    # Latin-1 never fails: an SMSC sending non-ASCII octets is logged, not fatal.
    return data[offset:end].decode("latin-1"), end + 1


def header(command_id, command_status, sequence_number, body=b""):
    """A whole PDU: the header with its length, then C{body}."""
    return HEADER.pack(HEADER_LENGTH + len(body), command_id, command_status, sequence_number) + body


def encode_tlvs(tlvs):
    return b"".join(_TLV_HEADER.pack(tag, len(value)) + value for tag, value in tlvs)


def decode_tlvs(data, offset):
    """The ((tag, value), ...) from C{offset} to the end of C{data} (§3.2.4)."""
    tlvs = []
    end = len(data)
    while offset < end:
        if offset + 4 > end:
            raise MalformedPDU("a TLV header is cut short")
        tag, length = _TLV_HEADER.unpack_from(data, offset)
        offset += 4
        if offset + length > end:
            raise MalformedPDU(f"TLV 0x{tag:04X} of {length} octets runs past the PDU")
        tlvs.append((tag, data[offset:offset + length]))
        offset += length
    return tuple(tlvs)


def tlv_value(tlvs, tag):
    for t, value in tlvs:
        if t == tag:
            return value
    return None


@dataclass(frozen=True, slots=True)
class Bind:
    """The body of a bind_transceiver (§4.1.5)."""

    system_id: str
    password: str
    system_type: str = ""
    interface_version: int = INTERFACE_VERSION
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""


def encode_bind(command_id, sequence_number, bind):
    body = b"".join((
        cstring(bind.system_id, MAX_SYSTEM_ID, "system_id"),
        cstring(bind.password, MAX_PASSWORD, "password"),
        cstring(bind.system_type, MAX_SYSTEM_TYPE, "system_type"),
        bytes((bind.interface_version, bind.addr_ton, bind.addr_npi)),
        cstring(bind.address_range, 40, "address_range"),
    ))
    return header(command_id, ESME_ROK, sequence_number, body)


def decode_bind(body):
    system_id, offset = read_cstring(body, 0, "system_id")
    password, offset = read_cstring(body, offset, "password")
    system_type, offset = read_cstring(body, offset, "system_type")
    if offset + 3 > len(body):
        raise MalformedPDU("bind body cut short")
    interface_version, addr_ton, addr_npi = body[offset], body[offset + 1], body[offset + 2]
    address_range, offset = read_cstring(body, offset + 3, "address_range")
    if offset != len(body):
        raise MalformedPDU(f"{len(body) - offset} octets after the bind body")
    return Bind(system_id, password, system_type, interface_version, addr_ton, addr_npi, address_range)


@dataclass(slots=True)
class ShortMessage:
    """
    The body of a submit_sm (§4.4.1) or a deliver_sm (§4.6.1): the two share
    one layout (in a deliver_sm the times are empty).  C{tlvs} are
    ((tag, value octets), ...) in order.  Not frozen: a frozen dataclass
    sets each of these 18 fields through object.__setattr__, a cost paid
    for every receipt.
    """

    destination_addr: str
    short_message: bytes = b""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    source_addr: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    service_type: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    tlvs: tuple = ()


def encode_short_message(command_id, sequence_number, sm):
    if len(sm.short_message) > MAX_SHORT_MESSAGE:
        raise ValueError(f"short_message of {len(sm.short_message)} octets (at most {MAX_SHORT_MESSAGE})")
    body = b"".join((
        cstring(sm.service_type, MAX_SERVICE_TYPE, "service_type"),
        bytes((sm.source_addr_ton, sm.source_addr_npi)),
        cstring(sm.source_addr, MAX_ADDRESS, "source_addr"),
        bytes((sm.dest_addr_ton, sm.dest_addr_npi)),
        cstring(sm.destination_addr, MAX_ADDRESS, "destination_addr"),
        bytes((sm.esm_class, sm.protocol_id, sm.priority_flag)),
        cstring(sm.schedule_delivery_time, 16, "schedule_delivery_time"),
        cstring(sm.validity_period, 16, "validity_period"),
        bytes((sm.registered_delivery, sm.replace_if_present_flag, sm.data_coding, sm.sm_default_msg_id)),
        bytes((len(sm.short_message),)),
        sm.short_message,
        encode_tlvs(sm.tlvs),
    ))
    return header(command_id, ESME_ROK, sequence_number, body)


def decode_short_message(body):
    # Inlined (no helper per field): every receipt the SMSC sends comes
    # through here, one per segment we submitted.
    try:
        find = body.find
        end = find(b"\0")
        if end < 0:
            raise MalformedPDU("service_type is not NUL-terminated")
        service_type = body[:end].decode("latin-1")
        source_addr_ton, source_addr_npi = body[end + 1], body[end + 2]
        offset = end + 3
        end = find(b"\0", offset)
        if end < 0:
            raise MalformedPDU("source_addr is not NUL-terminated")
        source_addr = body[offset:end].decode("latin-1")
        dest_addr_ton, dest_addr_npi = body[end + 1], body[end + 2]
        offset = end + 3
        end = find(b"\0", offset)
        if end < 0:
            raise MalformedPDU("destination_addr is not NUL-terminated")
        destination_addr = body[offset:end].decode("latin-1")
        esm_class, protocol_id, priority_flag = body[end + 1], body[end + 2], body[end + 3]
        offset = end + 4
        end = find(b"\0", offset)
        if end < 0:
            raise MalformedPDU("schedule_delivery_time is not NUL-terminated")
        schedule_delivery_time = body[offset:end].decode("latin-1") if end > offset else ""
        offset = end + 1
        end = find(b"\0", offset)
        if end < 0:
            raise MalformedPDU("validity_period is not NUL-terminated")
        validity_period = body[offset:end].decode("latin-1") if end > offset else ""
        registered_delivery, replace_if_present_flag, data_coding, sm_default_msg_id, sm_length = (
            body[end + 1], body[end + 2], body[end + 3], body[end + 4], body[end + 5]
        )
    except IndexError:
        raise MalformedPDU("body cut short") from None
    offset = end + 6
    if offset + sm_length > len(body):
        raise MalformedPDU(f"sm_length {sm_length} runs past the PDU")
    short_message = body[offset:offset + sm_length]
    offset += sm_length
    tlvs = decode_tlvs(body, offset) if offset < len(body) else ()
    return ShortMessage(
        destination_addr, short_message, dest_addr_ton, dest_addr_npi, source_addr, source_addr_ton,
        source_addr_npi, service_type, esm_class, protocol_id, priority_flag, schedule_delivery_time,
        validity_period, registered_delivery, replace_if_present_flag, data_coding, sm_default_msg_id, tlvs,
    )


def encode_message_id_response(command_id, command_status, sequence_number, message_id=""):
    """
    A submit_sm_resp (§4.4.2), deliver_sm_resp (§4.6.2, message_id unused
    and empty) or bind_*_resp (§4.1.6, its system_id): one C-octet string.
    """
    return header(command_id, command_status, sequence_number, cstring(message_id, 64, "message_id"))


def decode_message_id(body):
    """
    The C-octet string that opens a response's body.  Lenient: an error
    response may have no body at all (§4.4.2), and an id without its NUL
    is still the SMSC's id for a message it took.
    """
    end = body.find(b"\0")
    return body[: end if end >= 0 else len(body)].decode("latin-1")


def decode_bind_response(body):
    """(system_id, TLVs) of a bind_transceiver_resp (§4.1.6); both may be absent after an error."""
    end = body.find(b"\0")
    if end < 0:
        return body.decode("latin-1"), ()
    return body[:end].decode("latin-1"), decode_tlvs(body, end + 1)


class SubmitEncoder:
    """
    The submit_sm PDUs of one ESME: the fields that never change (service
    type, source address, registered_delivery) are encoded once, the rest
    joined per segment.  Byte for byte what L{encode_short_message} makes
    of the same fields (the tests check it).
    """

    __slots__ = ("_prefix", "_registered_delivery")

    def __init__(self, source_addr="", source_addr_ton=0, source_addr_npi=0, service_type="", registered_delivery=1):
        self._prefix = (
            cstring(service_type, MAX_SERVICE_TYPE, "service_type")
            + bytes((source_addr_ton, source_addr_npi))
            + cstring(source_addr, MAX_ADDRESS, "source_addr")
        )
        self._registered_delivery = registered_delivery

    def encode(self, sequence_number, dest_addr_ton, dest_addr_npi, destination_addr, esm_class, data_coding,
               short_message):
        """C{destination_addr} as ASCII octets (checked by the caller), C{short_message} at most 254 octets."""
        # The NUL ending destination_addr, esm_class, protocol_id,
        # priority_flag, two empty times, registered_delivery,
        # replace_if_present_flag, data_coding, sm_default_msg_id, sm_length.
        tail = _SUBMIT_TAIL.pack(
            0, esm_class, 0, 0, 0, 0, self._registered_delivery, 0, data_coding, 0, len(short_message)
        )
        prefix = self._prefix
        length = HEADER_LENGTH + len(prefix) + 2 + len(destination_addr) + 11 + len(short_message)
        return b"".join((
            HEADER.pack(length, SUBMIT_SM, 0, sequence_number),
            prefix,
            bytes((dest_addr_ton, dest_addr_npi)),
            destination_addr,
            tail,
            short_message,
        ))
