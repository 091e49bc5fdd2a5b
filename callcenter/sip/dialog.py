"""
A SIP dialog (RFC 3261 §12): the peer-to-peer relationship an INVITE and
its 2xx create, and the requests sent within it.
"""

from callcenter.sip.address import NameAddr
from callcenter.sip.message import Request


class Dialog:
    """
    A dialog, from either side.  The constructor builds the UAS side
    (§12.1.1) from the INVITE we answer and the tag we put in our To;
    L{for_uac} the UAC side (§12.1.2) from our INVITE and its 2xx.
    """

    def __init__(self, invite, local_tag, local_contact):
        self.call_id = invite.call_id
        self.local_tag = local_tag
        self.remote_tag = invite.from_addr.tag
        self.local_contact = local_contact
        to = NameAddr.parse(invite.headers.get("To"))
        to.params["tag"] = local_tag
        self.local_party = str(to)
        self.remote_party = invite.headers.get("From")
        contacts = invite.headers.get_all("Contact")
        # §12.1.1: the remote target is the INVITE's Contact; the route set
        # its Record-Route, in order.
        self.remote_target = str(NameAddr.parse(contacts[0]).uri) if contacts else invite.uri
        self.route_set = list(invite.headers.get_all("Record-Route"))
        self.remote_cseq = invite.cseq[0]
        self.local_cseq = 0

    @classmethod
    def for_uac(cls, invite, response, local_contact):
        """
        The UAC side of a dialog (§12.1.2), from the INVITE we sent and a
        2xx to it: the route set is the 2xx's Record-Route in reverse, the
        remote target its Contact, the remote tag its To tag.  The remote
        CSeq stays empty until the far end sends a request.
        """
        dialog = cls.__new__(cls)
        dialog.call_id = invite.call_id
        dialog.local_tag = invite.from_addr.tag
        dialog.remote_tag = response.to_addr.tag
        dialog.local_contact = local_contact
        dialog.local_party = invite.headers.get("From")
        dialog.remote_party = response.headers.get("To")
        contacts = response.headers.get_all("Contact")
        dialog.remote_target = str(NameAddr.parse(contacts[0]).uri) if contacts else invite.uri
        dialog.route_set = list(reversed(response.headers.get_all("Record-Route")))
        dialog.remote_cseq = None
        dialog.local_cseq = invite.cseq[0]
        return dialog

    @property
    def key(self):
        return (self.call_id, self.local_tag)

    def accepts(self, request):
        """
        §12.2.2: whether an in-dialog request is in order; a lower CSeq than
        the last one seen is a late retransmission or an attack (answer 500).
        """
        number = request.cseq[0]
        if request.method in ("ACK", "CANCEL"):
            return True  # They reuse the INVITE's number.
        if self.remote_cseq is not None and number <= self.remote_cseq:
            return False
        self.remote_cseq = number
        return True

    def request(self, method, via):
        """
        A new request in this dialog (§12.2.1.1): to the remote target
        through the route set (loose routing, RFC 3261 §16.12), with the
        next local CSeq.  C{via} is our top Via value, branch included.
        """
        self.local_cseq += 1
        return self._build(method, via, self.local_cseq)

    def ack(self, via):
        """
        The ACK for the 2xx that made this dialog (§13.2.2.4): built like
        any request in it but with the INVITE's CSeq number.  Call before
        any other request is sent in the dialog.
        """
        return self._build("ACK", via, self.local_cseq)

    def _build(self, method, via, number):
        request = Request(method, self.remote_target)
        request.headers.add("Via", via)
        for route in self.route_set:
            request.headers.add("Route", route)
        request.headers.add("Max-Forwards", "70")
        request.headers.add("From", self.local_party)
        request.headers.add("To", self.remote_party)
        request.headers.add("Call-ID", self.call_id)
        request.headers.add("CSeq", f"{number} {method}")
        request.headers.add("Contact", f"<{self.local_contact}>")
        return request
