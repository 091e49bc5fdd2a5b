"""README.rst documents what the code does."""

import os

from callcenter.config import reference
from callcenter.subsystems import discover

README = os.path.join(os.path.dirname(__file__), "..", "README.rst")


def test_readme_carries_the_current_configuration_reference():
    with open(README, encoding="utf-8") as f:
        readme = f.read()
    start = readme.index(".. config-reference-start\n") + len(".. config-reference-start\n")
    end = readme.index(".. config-reference-end")
    assert readme[start:end].strip() == reference(discover()).strip(), (
        "run: callcenter config-reference, and paste it into README.rst"
    )


def test_readme_shows_the_two_commands():
    with open(README, encoding="utf-8") as f:
        readme = f.read()
    assert "make run" in readme and "make test" in readme
