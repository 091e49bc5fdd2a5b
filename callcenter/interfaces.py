"""
The zope interfaces at the seams between callcenter's parts.

A subsystem (web, telephony, ivr, trading, ...) never imports another one: it is
given a `Context` holding the objects below and talks through them.
"""

from zope.interface import Attribute, Interface


class ISubsystem(Interface):
    """
    A pluggable part of the server, found with ``getPlugins(ISubsystem,
    callcenter.plugins)``.  A third party adds one by shipping a module in a
    ``callcenter/plugins/`` directory (without ``__init__.py``) on ``sys.path``.
    """

    name = Attribute("The config table that configures it, e.g. 'web'; unique.")
    description = Attribute("One line saying what it does.")
    config_schema = Attribute(
        "A frozen dataclass whose fields are the keys its table accepts; declare "
        "fields with callcenter.config.setting().  Its instance is what "
        "makeService receives."
    )

    def makeService(config, context):
        """
        Build the subsystem's service.

        @param config: an instance of C{config_schema}, already validated.
        @param context: the shared L{callcenter.context.Context}.
        @return: an L{twisted.application.service.IService}; if it also provides
            L{IHealthCheck}, ``/health`` reports what it says.
        """


class IHealthCheck(Interface):
    """Something that can say whether it works."""

    def check_health():
        """
        @return: a L{callcenter.health.Health}, or a Deferred firing with one.
        """


class IStore(Interface):
    """
    The one data layer every subsystem uses (SQLite or PostgreSQL).

    Work runs in a thread pool, never on the reactor thread.  A Deferred from
    L{transaction} fires only after the transaction has committed durably, so
    it is safe to acknowledge to a user from its callback.
    """

    dialect = Attribute("'sqlite' or 'postgresql'.")

    def transaction(work, *args, **kwargs):
        """
        Call ``work(connection, *args, **kwargs)`` in a thread inside one
        transaction (a SQLAlchemy ``Connection``), commit, and fire with its
        result.  An exception rolls the transaction back and fails the
        Deferred with it.
        """


class IEventBus(Interface):
    """
    Typed events between subsystems.  The in-process implementation delivers
    to local subscribers; one on PostgreSQL LISTEN/NOTIFY or a message broker
    can replace it without changing publishers or subscribers, which is why
    events must be serialisable (see L{callcenter.events}).
    """

    def publish(event):
        """
        Deliver C{event} to every subscriber of its type (or a base type).
        A failing subscriber is logged and does not affect the others.

        @return: a Deferred that fires with None once every subscriber has
            handled it (including any Deferred a handler returned).
        """

    def subscribe(event_type, handler, subscriber):
        """
        Call C{handler(event)} for each published event that is an instance
        of C{event_type}.  C{subscriber} names who subscribed, for logs and
        metrics.

        @return: an object with a C{cancel()} method that unsubscribes.
        """


class IChannel(Interface):
    """
    One call's leg as the applications (IVR, ACD, fax) see it, whatever the
    signalling underneath (SIP here, Asterisk FastAGI later).  Operations
    return Deferreds; a call that ends makes pending ones fire with what they
    have (C{play} with False, C{collect_digits} with the digits so far).
    """

    call_id = Attribute("The signalling's call id.")
    correlation_id = Attribute("The id logs, orders and audits of this call carry.")
    caller = Attribute("A callcenter.telephony.callerid.CallerID: who called.")
    dialled = Attribute("The number dialled, as the caller dialled it.")
    codec = Attribute("The call's audio format (callcenter.sip.sdp.AudioFormat): prompts are encoded in it.")
    ended = Attribute("A Deferred firing with the hang-up reason when the call ends.")

    def answer():
        """Answer (200 OK with media).  Fires when the caller has ACKed."""

    def play(frames, interruptible=False):
        """
        Play pre-encoded audio (a list of 20 ms payloads in the call's codec,
        see callcenter.media.wavfile.load_prompt).  Fires True when played
        to the end, False when stopped, replaced or the call ended.

        @param interruptible: a key press stops it (barge-in); the key is
            kept for the next C{collect_digits}.
        """

    def stop_playing():
        """Stop what is playing."""

    def collect_digits(maximum, first_timeout, inter_digit_timeout, terminators="#"):
        """
        Collect DTMF digits (RFC 4733, SIP INFO or in-band, each key press
        once) until C{maximum} digits, a terminator (not included) or a
        timeout.  Fires with the digits (possibly empty).
        """

    def record(rx=None, tx=None, mixed=None):
        """
        Start recording the call to G.711 WAV files: what the far end says
        (C{rx}), what it hears (C{tx}), both (C{mixed}); give at least one
        path.  Returns a recording whose C{stop()} fires once the files are
        on disk (fsync'd); the call ending stops it too.
        """

    def bridge(other):
        """
        Join this call's audio with C{other}'s (another IChannel) until one
        ends; fires when it does.  DTMF sent as events passes across.
        """

    def transfer(number):
        """
        Hand the call to C{number} (a public number or an extension), as
        the B2BUA connects a caller; fires when that call ends.
        """

    def stats():
        """Media statistics: packets and octets sent and received, losses."""

    def hangup(reason="normal"):
        """End the call (BYE, or a final error response if not answered)."""


class IWebAPI(Interface):
    """
    An HTTP API a subsystem serves on the web subsystem's listener.  The
    subsystem offers it with C{context.components.provide(IWebAPI, api)};
    the web subsystem looks its providers up at each request, so the order
    in which subsystems are built does not matter.
    """

    prefix = Attribute(
        "The path it is served under, without slashes at either end, e.g. 'api/v1'.  "
        "The longest matching prefix wins; /health and /metrics cannot be taken."
    )

    def resource():
        """
        The L{twisted.web.resource.IResource} serving the paths below
        C{prefix} (a Klein app's resource: its routes omit the prefix).
        Called once; the result is kept.
        """


class IFlows(Interface):
    """
    The IVR's call flows by name: what a SIP route (C{"ivr:trading"}) and a
    FastAGI URL (C{agi://host:4573/trading}) run for a call.
    """

    def get(name):
        """C{flow(channel) -> Deferred} for this name, or None if there is none."""

    def names():
        """The flow names offered, sorted."""
