"""
Built-in telephony applications: what the echo test and tone extensions do.
Each takes an IChannel and returns (a Deferred) when the call should end.
"""

from twisted.internet import defer

from callcenter.interfaces import IFlows
from callcenter.media import g711
from callcenter.media.tones import tone_frames



@defer.inlineCallbacks
def echo_test(channel):
    """Everything the caller says comes straight back: tests a line's audio both ways."""
    yield channel.answer()
    channel.echo()
    yield channel.ended


@defer.inlineCallbacks
def tone_test(channel):
    """A 1 kHz tone, one second on, one second off, until the caller hangs up."""
    yield channel.answer()
    encoding = channel.codec.encoding
    tone = [g711.ENCODERS[encoding](frame) for frame in tone_frames((1000,), 1000, 8000)]
    second_of_silence = [bytes((g711.SILENCE[encoding],)) * 160] * 50
    while not channel.ended.called:
        played = yield channel.play(tone + second_of_silence)
        if not played:
            break


@defer.inlineCallbacks
def dtmf_test(channel):
    """
    Checks a phone's keys: collects what is pressed until # (or 20 digits,
    or 5 s without a key), logs it and hangs up.
    """
    yield channel.answer()
    digits = yield channel.collect_digits(20, first_timeout=10, inter_digit_timeout=5, terminators="#")
    channel.log.info("DTMF test: caller pressed {digits}", digits=digits or "nothing")


def ivr_application(flow_name, components):
    """
    The IVR flow C{flow_name}, looked up per call: the ivr subsystem may be
    built after us, or not enabled (the caller then hears 480).
    """

    def application(channel):
        flows = components.lookup(IFlows)
        flow = flows.get(flow_name) if flows is not None else None
        if flow is None:
            channel.log.warn("no IVR flow {flow!r}: enable [ivr]", flow=flow_name)
            channel.hangup("unavailable")
            return None
        return flow(channel)

    return application


APPLICATIONS = {"echo": echo_test, "tone": tone_test, "dtmf": dtmf_test}
