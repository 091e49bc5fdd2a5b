"""The real server with telephony on ephemeral ports, for end-to-end SIP tests."""

import os
import subprocess
import sys

import pytest

from baresip import Baresip

from postgres import copy_database, create_database
from processes import callcenter, server_config, twistd
from telephony_server import ETC, SERVICE_NUMBERS, Server

PROMPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "var", "prompts")


@pytest.fixture(scope="session")
def demo_database(tmp_path_factory, backend, postgres_admin_url):
    """
    A database with the demo data, loaded once for the session by `callcenter
    demo load`: each server's database starts as a copy of it.  Loading
    hashes 17 demo passwords and PINs at argon2's production cost, some 4 s
    of CPU per server; test_cli tests the command itself.
    """
    directory = tmp_path_factory.mktemp("demo")
    if backend == "postgresql":
        url = create_database(postgres_admin_url)
    else:
        url = f"sqlite:///{directory}/demo.sqlite"
    config = server_config(directory / "callcenter.toml", url)
    loaded = callcenter("demo", "load", "--config", config, "--data", ETC)
    assert loaded.returncode == 0, loaded.stderr
    return url


@pytest.fixture
def start_server(tmp_path, db_url, demo_database):
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
        if not copy_database(demo_database, db_url):
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
