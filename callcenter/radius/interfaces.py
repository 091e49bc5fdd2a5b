"""
The seams of the radius subsystem: the protocol side (packets, clients,
authenticators, duplicates) asks the policy side (accounts, quotas,
sessions) for decisions and hands it accounting records; neither knows the
other's internals.
"""

from zope.interface import Attribute, Interface


class IAccessPolicy(Interface):
    """
    Decides Access-Requests from the investors' internet accounts.  A
    policy may also offer C{decide_now(request)}: the L{AccessDecision}
    when it can be made from what the policy holds in memory (a password
    verified recently, the account's row cached), else None; the listener
    asks it first and answers without a Deferred, falling back to
    L{authenticate}.  An exception from it costs only that request.
    """

    def authenticate(request):
        """
        Decide an L{AccessRequest}.

        @return: a Deferred firing with an L{AccessDecision}.  It never
            fails for a wrong password or an unknown user (that is a
            reject); a failure means the decision could not be made (the
            store is down) and the request is dropped, so the NAS retries.
        """


class IAccountingSink(Interface):
    """Keeps accounting records; the Accounting-Response waits for it."""

    def record(request):
        """
        Persist an L{AccountingRecord}: sessions and usage are durable when
        the returned Deferred fires, and only then is the NAS answered.  A
        failure means the record was not kept: no answer, the NAS retries.
        """

    def keep(request, done, context):
        """
        Optional, for a listener's thousands of records a second: L{record}
        without a Deferred.  C{done(outcome, context)} is called once the
        record is durable, with what L{record} fires with, or a
        L{twisted.python.failure.Failure} if it was not kept; possibly
        before C{keep} returns.
        """


class IDisconnector(Interface):
    """Asks NASes to end sessions (RFC 5176 Disconnect-Request)."""

    def disconnect(session, reason):
        """
        Send a Disconnect-Request for C{session} (a row of radius_sessions)
        to its NAS, retrying; fires with the outcome ("ack", "nak" with the
        Error-Cause, or "timeout"), which is also recorded.
        """


class IRadiusClients(Interface):
    """The NASes we answer, by source address."""

    def client_for(address):
        """The L{callcenter.radius.clients.RadiusClient} for source IP C{address}, or None."""

    clients = Attribute("Every configured client.")
