"""
The IVR subsystem's service: its call flows by name (L{IFlows}), each run
so that it never leaves a call hanging, for the SIP routes and FastAGI.
"""

from twisted.application.service import Service
from twisted.internet import defer
from zope.interface import implementer

from callcenter.interfaces import IFlows
from callcenter.ivr.dialogue import Dialogue, PackPrompter, run_flow
from callcenter.trading.interfaces import ITradingService


@implementer(IFlows)
class IVRService(Service):
    """
    @param components: the shared registry; the trading service is looked
        up there when a call arrives, since subsystems start in any order.
    @param prompter: an L{callcenter.ivr.dialogue.IPrompter}.
    """

    # The flows speak Mandarin; the English pack is built for the English
    # flows to come (a caller choosing a language at the welcome).
    def __init__(self, components, prompter, language="zh", max_login_attempts=3):
        self._components = components
        self._prompter = prompter
        self._dialogue = Dialogue(prompter, language)
        self._language = language
        self._max_login_attempts = max_login_attempts
        self._flows = {"trading": self._phone_trading}

    def names(self):
        return sorted(self._flows)

    def get(self, name):
        make = self._flows.get(name)
        if make is None:
            return None
        return lambda channel: self._run(channel, make)

    @defer.inlineCallbacks
    def _run(self, channel, make):
        unavailable = f"{self._language}/service-unavailable"

        @defer.inlineCallbacks
        def flow(channel):
            yield channel.answer()
            yield make(channel)

        yield run_flow(channel, flow, self._prompter, unavailable_prompt=unavailable)

    def _phone_trading(self, channel):
        from callcenter.ivr.flows.phone_trading import PhoneTrading

        trading = self._components.lookup(ITradingService)
        if trading is None:
            raise LookupError("phone trading needs the trading subsystem: add a [trading] table")
        return PhoneTrading(trading, self._dialogue, max_login_attempts=self._max_login_attempts)(channel)


def ivr_service(config, context):
    service = IVRService(
        context.components, PackPrompter(config.prompts), max_login_attempts=config.max_login_attempts
    )
    context.components.provide(IFlows, service)
    return service
