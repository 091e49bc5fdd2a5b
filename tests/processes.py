"""
Running the real ``twistd callcenter`` and ``callcenter`` commands as child
processes, the way an operator does, for end-to-end tests.
"""

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

TESTS = os.path.dirname(os.path.abspath(__file__))
PLUGIN_PATH = os.path.join(TESTS, "plugin_path")
BIN = os.path.dirname(sys.executable)

# Generous: a loaded CI machine may be slow, and these only bound a hang.
DEADLINE = 60


def environment():
    """Our environment plus the test-only plugin directory on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PLUGIN_PATH, env.get("PYTHONPATH")]))
    env.pop("CALLCENTER_CONFIG", None)
    return env


def toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return str(value)


def write_config(path, tables):
    """Write C{tables} ({table: {key: value}}) as a TOML file; returns path."""
    lines = []
    for table, values in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
        lines.append("")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return str(path)


def server_config(path, db_url, **tables):
    """A config for a test server: its database, web on an ephemeral port."""
    base = {
        "server": {"node": "test", "shutdown_timeout": 20.0},
        "storage": {"url": db_url},
        "web": {"listen": "tcp:0:interface=127.0.0.1"},
    }
    base.update(tables)
    return write_config(path, base)


def callcenter(*args, cwd=None):
    """Run the callcenter CLI; returns the CompletedProcess."""
    return subprocess.run(
        [os.path.join(BIN, "callcenter"), *args],
        capture_output=True,
        text=True,
        env=environment(),
        cwd=cwd,
        timeout=DEADLINE,
    )


def twistd(config_path, cwd=None, twistd_options=()):
    return ServerProcess(
        [os.path.join(BIN, "twistd"), "--pidfile=", "-n", *twistd_options, "callcenter", "--config", config_path],
        cwd=cwd,
    )


def twistd_tac(config_path, cwd):
    process = ServerProcess(
        [os.path.join(BIN, "twistd"), "--pidfile=", "-ny", os.path.join(TESTS, "..", "tac", "callcenter.tac")],
        cwd=cwd,
        extra_env={"CALLCENTER_CONFIG": config_path},
    )
    return process


class ServerProcess:
    """A server child process whose output is read line by line as it comes."""

    def __init__(self, argv, cwd=None, extra_env=None):
        env = environment()
        env.update(extra_env or {})
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=cwd,
        )
        self.lines = []
        self._queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self._queue.put(line)
        self._queue.put(None)

    @property
    def output(self):
        return "".join(self.lines)

    def wait_for(self, pattern, timeout=DEADLINE):
        """The first output line matching C{pattern}; fail if the process ends first."""
        regex = re.compile(pattern)
        for line in self.lines:
            match = regex.search(line)
            if match:
                return match
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {pattern!r} within {timeout}s:\n{self.output}")
            if line is None:
                self._queue.put(None)
                raise AssertionError(f"exited ({self.process.wait()}) before {pattern!r}:\n{self.output}")
            self.lines.append(line)
            match = regex.search(line)
            if match:
                return match

    def http_port(self):
        return int(self.wait_for(r"HTTP listening on 127\.0\.0\.1:(\d+)").group(1))

    def finish(self, timeout=DEADLINE):
        """Wait for the process to end and all its output; returns the status."""
        status = self.process.wait(timeout=timeout)
        while True:
            line = self._queue.get(timeout=timeout)
            if line is None:
                self._queue.put(None)
                return status
            self.lines.append(line)

    def terminate(self):
        """
        SIGTERM, as systemd or an operator stops it.  True when it shut down
        cleanly: twistd then ends by re-raising the signal it was stopped
        with (so a supervisor sees why), after logging its last line.
        """
        self.process.send_signal(signal.SIGTERM)
        status = self.finish()
        return status == -signal.SIGTERM and "Server Shut Down." in self.output

    def kill(self):
        self.process.kill()
        return self.finish()

    def stop_if_running(self):
        if self.process.poll() is None:
            self.kill()


def get_json(port, path):
    """(status, parsed JSON body) of GET http://127.0.0.1:port/path."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=DEADLINE) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def get_text(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=DEADLINE) as r:
        return r.status, r.headers.get("Content-Type"), r.read().decode()
