"""The [ivr] settings that are more than a scalar: the main menus."""

import pytest

from callcenter.config import Mismatch
from callcenter.plugins.ivr import MenuSettings, MenuTable


def test_a_menu_has_its_languages_and_a_flow_per_key():
    menus = MenuTable().parse({
        "hotline": {"languages": ["zh", "en"], "3": "experts", "1": "trading", "2": "bulletins"},
        "english-line": {"languages": ["en"], "1": "trading"},
    })
    assert menus == (
        MenuSettings("hotline", ("zh", "en"), (("1", "trading"), ("2", "bulletins"), ("3", "experts"))),
        MenuSettings("english-line", ("en",), (("1", "trading"),)),
    )


def test_a_menu_speaks_mandarin_unless_told():
    [menu] = MenuTable().parse({"hotline": {"1": "trading"}})
    assert menu.languages == ("zh",)


@pytest.mark.parametrize(
    "menus, problem",
    [
        ({"hotline": {"0": "trading"}}, 'menu hotline: "0" is not a key 1-9'),
        ({"hotline": {"1": "casino"}}, 'key 1: "casino" is not a flow'),
        ({"hotline": {"languages": ["fr"], "1": "trading"}}, "languages must be a list among"),
        ({"hotline": {"languages": ["zh", "zh"], "1": "trading"}}, "languages must be a list among"),
        ({"hotline": {"languages": []}}, "languages must be a list among"),
        ({"hotline": {"languages": ["zh"]}}, "menu hotline has no keys"),
        ({"trading": {"1": "trading"}}, "not one of the flows"),
        ({"Hot Line": {"1": "trading"}}, "a name is lower-case letters"),
        ({"hotline": "trading"}, "menu hotline is not a table"),
        ("hotline", None),
    ],
)
def test_menu_mistakes_are_named(menus, problem):
    with pytest.raises(Mismatch) as raised:
        MenuTable().parse(menus)
    if problem is not None:
        assert problem in str(raised.value)
