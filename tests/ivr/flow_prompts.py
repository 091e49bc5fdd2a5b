"""The prompt names a flow module plays, read from its source."""

import ast
import inspect

# The steps that take prompt names as arguments (Dialogue's and the flows' own).
_STEPS = {
    "play", "menu", "confirm", "collect", "entry", "end", "listen", "record", "login", "_record_once", "category_menu",
    "stock_code",
}
# Steps whose second argument is a kind of recording or login, not a prompt.
_KIND_SECOND = {"record", "login", "_record_once"}


def _constants(node):
    """String constants in C{node}, not looking inside calls (say_quantity's "share" is no prompt)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif not isinstance(node, ast.Call):
        for child in ast.iter_child_nodes(node):
            yield from _constants(child)


def prompt_names(module):
    """The prompt names (without a language) passed to the steps in C{module}'s source."""
    names = set()
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        step = getattr(node.func, "attr", getattr(node.func, "id", None)) if isinstance(node, ast.Call) else None
        if step == "play" and getattr(node.func.value, "id", None) == "channel":
            continue  # straight to the channel: audio, or Asterisk's own sounds ("beep")
        if step in _STEPS:
            arguments = [*node.args, *(keyword.value for keyword in node.keywords)]
            if step in _KIND_SECOND:
                del arguments[1:2]
            for argument in arguments:
                # Digits are a menu's choices.
                names.update(name for name in _constants(argument) if not name.isdigit())
    return names
