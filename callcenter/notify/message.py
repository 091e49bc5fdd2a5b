"""What the outbox and the channel senders pass each other."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """
    One message to one recipient on one channel, rendered and stored.

    C{address} is the channel's: a mobile number (E.164 digits, '+'
    allowed) for SMS, a pager id for SNPP, an e-mail address, a webhook's
    subscriber id.  C{subject} is for e-mail only; C{body} is the text to
    send (for the webhook, JSON text).  C{message_id} is the outbox's, for
    logs and for matching receipts; C{idempotency_key} is stable across
    restarts and retries (a webhook sends it so the receiver can drop a
    repeat).
    """

    message_id: int
    channel: str
    address: str
    body: str
    subject: str = ""
    language: str = "zh"
    idempotency_key: str = ""


@dataclass(frozen=True, slots=True)
class Accepted:
    """
    The peer took the message.  C{provider_ids} are its ids for it, if it
    gives any: one SMSC message_id per segment of a long SMS (each segment
    gets its own delivery receipt), an SMTP queue id.
    """

    provider_ids: tuple = ()
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Receipt:
    """
    A delivery report for (a segment of) a message the peer accepted
    earlier, by one of its L{Accepted.provider_ids}: C{delivered} True (DELIVRD), False (UNDELIV,
    EXPIRED, REJECTD, DELETED) or None (ENROUTE, ACCEPTD, UNKNOWN: not
    final).
    """

    provider_id: str
    delivered: bool | None
    state: str
    detail: str = ""


class SendFailure(Exception):
    """Why a peer did not take a message (the text is kept in the message's history)."""


class TemporaryFailure(SendFailure):
    """Worth trying again later: the peer is down, busy, throttling or answered 4xx."""

    def __init__(self, reason, retry_after=None):
        super().__init__(reason)
        # Seconds the peer asked us to wait (ESME_RTHROTTLED, 421), if it did.
        self.retry_after = retry_after


class PermanentFailure(SendFailure):
    """Not worth trying again: the address or the message was refused for good."""
