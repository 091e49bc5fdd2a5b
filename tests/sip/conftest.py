"""The real server with telephony on ephemeral ports, for end-to-end SIP tests."""

import os
import subprocess
import sys

import pytest

from baresip import Baresip

from processes import callcenter, server_config, twistd
from telephony_server import ETC, SERVICE_NUMBERS, Server

PROMPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "var", "prompts")


@pytest.fixture
def start_server(tmp_path, db_url):
    """Start the server, demo data loaded, with these [telephony] settings (and other tables)."""
    started = []

    def start(extra_tables=None, **telephony):
        config = server_config(
            tmp_path / "callcenter.toml",
            db_url,
            **(extra_tables or {}),
            telephony={
                "udp": "127.0.0.1:0",
                "tcp": "tcp:0:interface=127.0.0.1",
                "routes": SERVICE_NUMBERS,
                **telephony,
            },
        )
        loaded = callcenter("demo", "load", "--config", config, "--data", ETC)
        assert loaded.returncode == 0, loaded.stderr
        started.append(twistd(config, cwd=tmp_path))
        return Server(started[-1])

    try:
        yield start
    finally:
        for process in started:
            process.stop_if_running()


@pytest.fixture
def server(start_server):
    return start_server()


@pytest.fixture
def softphone(tmp_path):
    """Start a baresip in its own directory; all are stopped at the end."""
    phones = []

    def start(name="phone", wav=None):
        directory = tmp_path / name
        directory.mkdir()
        phones.append(Baresip(directory, wav=wav))
        return phones[-1]

    try:
        yield start
    finally:
        for phone in phones:
            phone.stop()


@pytest.fixture(scope="session")
def prompt_pack():
    """The prompt pack `make test` builds (a cache: instant when it is there)."""
    subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "callcenter"), "prompts", "build", "--dir", PROMPTS],
        check=True, capture_output=True, timeout=600,
    )
    return PROMPTS
