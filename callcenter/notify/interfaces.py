"""
The seam of the notify subsystem: the outbox (durable, retrying, rate
limited) hands one L{OutgoingMessage} at a time to the sender of its
channel; a sender speaks one protocol to one kind of peer (an SMSC, a
paging terminal, SMTP relays, a webhook) and knows nothing of storage,
retries or subscriptions.
"""

from zope.interface import Attribute, Interface


class IMessageSender(Interface):
    """Delivers messages of one channel to its peer."""

    channel = Attribute("The channel's name: 'sms', 'pager', 'email' or 'webhook'.")
    window = Attribute("How many messages the outbox may have in L{send} at once.")

    def send(message):
        """
        Hand C{message} (an L{callcenter.notify.message.OutgoingMessage}) to
        the peer.

        @return: a Deferred that fires with a
            L{callcenter.notify.message.Accepted} once the peer has taken
            responsibility for it (submit_sm_resp, 250 after DATA, a 2xx),
            or fails with L{callcenter.notify.message.TemporaryFailure}
            (the outbox retries later: peer down, throttled, 4xx) or
            L{callcenter.notify.message.PermanentFailure} (dead-lettered:
            a refused address, a 5xx the protocol says not to retry).
            Any other failure is taken as temporary.
        """

    def set_receipt_handler(handler):
        """
        Call C{handler(receipt)} with a
        L{callcenter.notify.message.Receipt} for each delivery report the
        peer sends later (SMPP deliver_sm receipts); senders without
        reports never call it.
        """
