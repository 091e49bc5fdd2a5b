"""
The IVR subsystem's service: its call flows by name (L{IFlows}), each run
so that it never leaves a call hanging, for the SIP routes and FastAGI.
The configured main menus are flows too, by their names.

A caller who presses 0 is transferred to the configured agent number
(until the ACD takes agents' calls) once the flow has ended.

At its start it removes the recordings a crash left without their rows
(L{callcenter.ivr.orphans}), off the reactor thread.
"""

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from zope.interface import implementer

from callcenter.interfaces import IFlows
from callcenter.ivr.dialogue import AGENT, Dialogue, PackPrompter, run_flow
from callcenter.ivr.flows.main_menu import MainMenu
from callcenter.trading.interfaces import ITradingService

_log = Logger()


@implementer(IFlows)
class IVRService(Service):
    """
    @param components: the shared registry; the trading service is looked
        up there when a call arrives, since subsystems start in any order.
    @param prompter: an L{callcenter.ivr.dialogue.IPrompter}.
    @param store: the IStore the bulletin and expert flows keep their data in.
    @param reactor: its thread pool checks editors' and experts' PINs (argon2).
    @param recordings: the directory of bulletins' and commentaries' recordings.
    @param language: the language of a flow dialled directly.
    @param agent: the number 0 transfers to; empty for none.
    @param menus: L{callcenter.plugins.ivr.MenuSettings}, each a flow of its name.
    """

    def __init__(
        self, components, prompter, language="zh", max_login_attempts=3, store=None, reactor=None,
        clock=None, recordings="var/recordings", agent="", menus=(),
    ):
        self._components = components
        self._prompter = prompter
        self._dialogue = Dialogue(prompter, language)
        self._agent = agent
        self._max_login_attempts = max_login_attempts
        self._store = store
        self._reactor = reactor
        self._clock = clock if clock is not None else reactor
        self._recordings = recordings
        self._credentials = None
        self._names = None
        self._listings = None
        self._sweeping = None
        self._flows = {
            "trading": self._phone_trading,
            "bulletins": self._bulletins,
            "experts": self._experts,
        }
        for menu in menus:
            self._flows[menu.name] = self._main_menu(menu)

    def startService(self):
        super().startService()
        if self._store is not None and self._reactor is not None:
            self._sweeping = self._sweep_orphans()

    def stopService(self):
        super().stopService()
        # The sweep reads the store: done before the store stops after us.
        sweeping, self._sweeping = self._sweeping, None
        return sweeping

    def _sweep_orphans(self):
        from callcenter.ivr.orphans import sweep_orphans

        def failed(failure):
            _log.failure("removing orphan recordings under {directory} failed", failure, directory=self._recordings)

        swept = sweep_orphans(self._store, self._in_thread, self._recordings, self._clock.seconds())
        return swept.addErrback(failed)

    def names(self):
        return sorted(self._flows)

    def get(self, name):
        make = self._flows.get(name)
        if make is None:
            return None
        return lambda channel: self._run(channel, make)

    @defer.inlineCallbacks
    def _run(self, channel, make):
        dialogue = self._dialogue

        @defer.inlineCallbacks
        def flow(channel):
            yield channel.answer()
            result = yield make(channel, dialogue)
            if result is AGENT:
                yield self._to_agent(channel, dialogue)

        yield run_flow(channel, flow, self._prompter, unavailable_prompt=dialogue.names("service-unavailable"))

    @defer.inlineCallbacks
    def _to_agent(self, channel, dialogue):
        # The flow has said "transferring you" already.
        if not self._agent:
            yield dialogue.play(channel, ["no-agent", "goodbye"])
            return
        _log.info(
            "call {cid} asked for an agent: transferring to {agent}", cid=channel.correlation_id, agent=self._agent
        )
        yield channel.transfer(self._agent)

    def _main_menu(self, menu):
        def make(channel, dialogue):
            return MainMenu(dict(menu.options), menu.languages, dialogue, self._run_within)(channel)

        return make

    def _run_within(self, name, channel, dialogue):
        """Run the flow C{name} inside another (a menu's): answered already, ended by it."""
        return self._flows[name](channel, dialogue)

    def _phone_trading(self, channel, dialogue):
        from callcenter.ivr.flows.phone_trading import PhoneTrading

        trading = self._components.lookup(ITradingService)
        if trading is None:
            raise LookupError("phone trading needs the trading subsystem: add a [trading] table")
        return PhoneTrading(trading, dialogue, max_login_attempts=self._max_login_attempts)(channel)

    def _information(self, flow_class, channel, dialogue):
        if self._store is None or self._reactor is None:
            raise LookupError(f"the {flow_class.__name__.lower()} flow needs the store and the reactor")
        if self._credentials is None:
            self._credentials = self._make_credentials()
        if self._listings is None:
            from callcenter.ivr.listings import Listings

            self._listings = Listings(self._store, self._clock)
        flow = flow_class(
            self._store, dialogue, self._recordings, self._clock, self._credentials, names=self._spoken_names(),
            listings=self._listings,
        )
        return flow(channel)

    def _in_thread(self, function, *args):
        # argon2 and speech synthesis take tens of milliseconds: never on the reactor thread.
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), function, *args)

    def _make_credentials(self):
        import datetime

        from callcenter.ivr.bulletins import Credentials

        clock = self._clock

        def now():
            return datetime.datetime.fromtimestamp(clock.seconds(), datetime.timezone.utc)

        return Credentials(self._store, self._in_thread, now)

    def _spoken_names(self):
        """Categories' and experts' names, said from prompts made in the pack's directory."""
        directory = getattr(self._prompter, "directory", None)
        if self._names is None and directory is not None:
            from callcenter.ivr.spoken_names import SpokenNames

            self._names = SpokenNames(directory, self._in_thread)
        return self._names

    def _bulletins(self, channel, dialogue):
        from callcenter.ivr.flows.information import Bulletins

        return self._information(Bulletins, channel, dialogue)

    def _experts(self, channel, dialogue):
        from callcenter.ivr.flows.information import Experts

        return self._information(Experts, channel, dialogue)


def ivr_service(config, context):
    service = IVRService(
        context.components, PackPrompter(config.prompts), language=config.language,
        max_login_attempts=config.max_login_attempts, store=context.store, reactor=context.reactor,
        clock=context.clock, recordings=config.recordings, agent=config.agent, menus=config.menus,
    )
    context.components.provide(IFlows, service)
    return service
