"""
Main menus (callcenter.ivr.flows.main_menu) and the IVR service that runs
flows by name, with menus, languages and the transfer to an agent.
"""

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from zope.interface import alsoProvides

from callcenter.context import Components
from callcenter.ivr.dialogue import AGENT, BACK, Dialogue, MemoryPrompter
from callcenter.ivr.flows.main_menu import MainMenu
from callcenter.ivr.phrases import PHRASES
from callcenter.ivr.say import VOCABULARY
from callcenter.ivr.service import IVRService
from callcenter.plugins.ivr import MenuSettings
from callcenter.telephony.callerid import CallerID
from callcenter.trading.interfaces import ITradingService
from test_dialogue import HANGUP, ScriptedChannel, run
from test_trading_flow import ACCOUNT, PASSWORD, FakeTrading

OPTIONS = {"1": "trading", "2": "bulletins", "3": "experts"}


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def prompter():
    return MemoryPrompter()


class TransferringChannel(ScriptedChannel):
    """A scripted channel that records transfers (the SIP and AGI channels connect the call)."""

    def __init__(self, clock, script=()):
        super().__init__(clock, script)
        self.caller = CallerID(number="13912345678", display_name=None, asserted=True)
        self.transfers = []

    def transfer(self, number):
        self.transfers.append(number)
        return defer.succeed(None)


class FlowsRun:
    """What the menu runs: each flow records the language it was run in and returns as told."""

    def __init__(self, results=()):
        self.results = list(results)
        self.runs = []

    def __call__(self, name, channel, dialogue):
        self.runs.append((name, dialogue.language))
        return defer.succeed(self.results.pop(0) if self.results else None)


def flat(prompter):
    return [name for names in prompter.played for name in names]


def test_a_key_runs_its_flow_in_the_default_language(clock, prompter):
    flows = FlowsRun()
    menu = MainMenu(OPTIONS, ["zh", "en"], Dialogue(prompter), flows)
    channel = ScriptedChannel(clock, [5, "2"])
    assert run(clock, menu(channel)) is None
    assert flows.runs == [("bulletins", "zh")]
    assert flat(prompter)[:3] == ["zh/hotline-welcome", "zh/language-offer", "en/language-offer"]
    assert flat(prompter)[3:] == [
        "zh/option-trading", "zh/digit-1", "zh/option-bulletins", "zh/digit-2",
        "zh/option-experts", "zh/digit-3", "zh/press-0-agent",
    ]


def test_two_at_the_offer_switches_to_english(clock, prompter):
    flows = FlowsRun()
    menu = MainMenu(OPTIONS, ["zh", "en"], Dialogue(prompter), flows)
    channel = ScriptedChannel(clock, ["2", "1"])
    run(clock, menu(channel))
    assert flows.runs == [("trading", "en")]
    assert flat(prompter)[3:] == [
        "en/option-trading", "en/one", "en/option-bulletins", "en/two", "en/option-experts", "en/three",
        "en/press-0-agent",
    ]


def test_a_menu_in_one_language_makes_no_offer(clock, prompter):
    flows = FlowsRun()
    menu = MainMenu({"5": "experts"}, ["en"], Dialogue(prompter), flows)
    run(clock, menu(ScriptedChannel(clock, ["5"])))
    assert flows.runs == [("experts", "en")]
    assert flat(prompter) == ["en/hotline-welcome", "en/option-experts", "en/five", "en/press-0-agent"]


def test_star_in_a_flow_comes_back_to_the_menu(clock, prompter):
    flows = FlowsRun([BACK, None])
    menu = MainMenu(OPTIONS, ["zh"], Dialogue(prompter), flows)
    assert run(clock, menu(ScriptedChannel(clock, ["1", "3"]))) is None
    assert flows.runs == [("trading", "zh"), ("experts", "zh")]


def test_zero_asks_for_an_agent(clock, prompter):
    flows = FlowsRun()
    menu = MainMenu(OPTIONS, ["zh"], Dialogue(prompter), flows)
    assert run(clock, menu(ScriptedChannel(clock, ["0"]))) is AGENT
    assert flows.runs == []
    assert flat(prompter)[-1] == "zh/transfer-agent"


def test_a_wrong_key_is_said_and_too_many_end_the_call(clock, prompter):
    flows = FlowsRun()
    menu = MainMenu(OPTIONS, ["zh"], Dialogue(prompter), flows)
    assert run(clock, menu(ScriptedChannel(clock, ["7", "*", "8"]))) is None
    assert flows.runs == []
    assert flat(prompter).count("zh/invalid-input") == 2
    assert flat(prompter)[-1] == "zh/too-many-attempts"


def test_a_hang_up_at_the_offer_runs_nothing(clock, prompter):
    flows = FlowsRun()
    menu = MainMenu(OPTIONS, ["zh", "en"], Dialogue(prompter), flows)
    channel = ScriptedChannel(clock, [1, HANGUP])
    outcome = run(clock, menu(channel))
    assert flows.runs == []
    assert outcome.type.__name__ == "CallEnded"


@pytest.mark.parametrize("options, languages", [({}, ["zh"]), ({"0": "trading"}, ["zh"]), (OPTIONS, []),
                                                (OPTIONS, ["fr"])])
def test_a_menu_needs_keys_and_known_languages(prompter, options, languages):
    with pytest.raises(ValueError):
        MainMenu(options, languages, Dialogue(prompter), FlowsRun())


# The service: flows by name, menus, agents.


def service(prompter, trading=None, **options):
    components = Components()
    if trading is not None:
        alsoProvides(trading, ITradingService)  # the test double has only what the flow uses
        components.provide(ITradingService, trading)
    return IVRService(components, prompter, **options)


def test_menus_are_flows_by_their_names(prompter):
    ivr = service(prompter, menus=[MenuSettings("hotline", ("zh",), (("1", "trading"),))])
    assert ivr.names() == ["bulletins", "experts", "hotline", "trading"]
    assert ivr.get("nonesuch") is None


def test_phone_trading_in_english_through_a_menu(clock, prompter):
    trading = FakeTrading()
    ivr = service(
        prompter, trading, menus=[MenuSettings("hotline", ("zh", "en"), (("1", "trading"), ("2", "bulletins")))]
    )
    channel = TransferringChannel(clock, ["2", "1", f"{ACCOUNT}#", f"{PASSWORD}#", "4", "1", HANGUP])
    run(clock, ivr.get("hotline")(channel))
    names = flat(prompter)
    assert "en/welcome" in names and "en/funds-available" in names
    assert not [name for name in names[3:] if name.startswith("zh/")]
    assert all(name in PHRASES or name in VOCABULARY for name in names)
    assert trading.logins and trading.logins[0][0] == ACCOUNT


HOTLINE = MenuSettings("hotline", ("en",), (("1", "trading"),))


def test_zero_transfers_to_the_agent_number(clock, prompter):
    ivr = service(prompter, FakeTrading(), agent="1001", menus=[HOTLINE])
    channel = TransferringChannel(clock, ["0"])
    run(clock, ivr.get("hotline")(channel))
    assert channel.transfers == ["1001"]
    assert flat(prompter)[-1] == "en/transfer-agent"


def test_zero_without_an_agent_number_is_told_so(clock, prompter):
    ivr = service(prompter, FakeTrading(), language="en", menus=[HOTLINE])
    channel = TransferringChannel(clock, ["0"])
    run(clock, ivr.get("hotline")(channel))
    assert channel.transfers == []
    assert flat(prompter)[-2:] == ["en/no-agent", "en/goodbye"]
    assert channel.hangups


def test_a_flow_that_cannot_start_says_so_in_its_language(clock, prompter):
    ivr = service(prompter, language="en")  # no trading subsystem
    channel = TransferringChannel(clock, [])
    run(clock, ivr.get("trading")(channel))
    assert flat(prompter) == ["en/service-unavailable"]
    assert channel.hangups
