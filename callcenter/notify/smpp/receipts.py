"""
Delivery receipts: a deliver_sm whose esm_class says so (§5.2.12: 0x04 an
SMSC delivery receipt, 0x20 an intermediate notification), read as a
L{Receipt}.

The message id and state come from the TLVs receipted_message_id and
message_state (§5.3.2.12, §5.3.2.35) when the SMSC sends them, else from
the text of Appendix B, ``id:IIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm
done date:YYMMDDhhmm stat:DDDDDDD err:E text:...``, which every SMSC
sends even when it sends the TLVs too.
"""

import re

from callcenter.notify.message import Receipt
from callcenter.notify.smpp.pdu import (
    ESM_DELIVERY_RECEIPT,
    ESM_INTERMEDIATE_NOTIFICATION,
    ESM_TYPE_MASK,
    MESSAGE_STATE,
    RECEIPTED_MESSAGE_ID,
)

# message_state (§5.2.28) by value, named as in the receipt text (Appendix B).
STATE_BY_VALUE = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
}
# True: delivered; False: final, not delivered; None: not final.
DELIVERED = {
    "DELIVRD": True,
    "UNDELIV": False,
    "EXPIRED": False,
    "REJECTD": False,
    "DELETED": False,
    "ENROUTE": None,
    "ACCEPTD": None,
    "UNKNOWN": None,
}
# Some SMSCs spell the state out in the text.
_LONG_NAMES = {"DELIVERED": "DELIVRD", "UNDELIVERABLE": "UNDELIV", "REJECTED": "REJECTD", "ACCEPTED": "ACCEPTD"}

# The fields before "text:", which is the start of the message and may
# itself contain anything.
_ID = re.compile(r"(?:^|\s)id:(\S+)", re.IGNORECASE)
_STAT = re.compile(r"(?:^|\s)stat:(\S+)", re.IGNORECASE)
_TEXT = re.compile(r"\stext:", re.IGNORECASE)
MAX_DETAIL = 200


class MalformedReceipt(ValueError):
    """A receipt with no message id or no state we can read."""


def is_receipt(esm_class):
    kind = esm_class & ESM_TYPE_MASK
    return kind == ESM_DELIVERY_RECEIPT or kind == ESM_INTERMEDIATE_NOTIFICATION


def parse_receipt(sm):
    """
    The L{Receipt} in C{sm} (a L{callcenter.notify.smpp.pdu.ShortMessage}
    from a deliver_sm).

    @raise MalformedReceipt: no id, or no state, in either form.
    """
    text = sm.short_message.decode("latin-1")
    detail = text.strip()[:MAX_DETAIL]
    provider_id = state = fields = None
    for tag, value in sm.tlvs:
        if tag == RECEIPTED_MESSAGE_ID:
            provider_id = value.split(b"\0", 1)[0].decode("latin-1")
        elif tag == MESSAGE_STATE and len(value) == 1:
            state = STATE_BY_VALUE.get(value[0])
    if not provider_id:
        fields = _TEXT.split(text, 1)[0]
        match = _ID.search(fields)
        provider_id = match.group(1) if match else None
        if not provider_id:
            raise MalformedReceipt(f"no message id in receipt {detail!r}")
    if state is None:
        match = _STAT.search(_TEXT.split(text, 1)[0] if fields is None else fields)
        if match is None:
            raise MalformedReceipt(f"no state in receipt {detail!r}")
        state = match.group(1).upper()
        state = _LONG_NAMES.get(state, state)
    return Receipt(provider_id, DELIVERED.get(state), state, detail)
