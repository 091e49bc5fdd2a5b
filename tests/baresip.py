"""
A real softphone for end-to-end tests: baresip 1.0 (Debian ``baresip-core``)
as a child process, headless, scripted over its ctrl_tcp module.

Not a test module.  Tests import it as ``from baresip import Baresip``, the
way they import ``processes``.
"""

import itertools
import json
import os
import queue
import socket
import subprocess
import threading
import time

from postgres import free_port
from processes import DEADLINE

MODULES = "/usr/lib/baresip/modules"


def sip_port():
    """
    A port P free for SIP on UDP and TCP with P+1 free on TCP too: baresip
    binds both for C{sip_listen 127.0.0.1:P} (P+1 is its TLS listener).
    """
    while True:
        port = free_port()
        kinds = (socket.SOCK_DGRAM, socket.SOCK_STREAM, socket.SOCK_STREAM)
        sockets = [socket.socket(socket.AF_INET, kind) for kind in kinds]
        try:
            for s, p in zip(sockets, (port, port, port + 1)):
                s.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()


def netstring(payload):
    return b"%d:%s," % (len(payload), payload)


class Baresip:
    """
    One baresip user agent.  Start it, then L{register} an account: the
    account is created over ctrl_tcp (C{uanew}) rather than read from the
    C{accounts} file, because baresip registers file accounts before the
    control connection exists and their REGISTER_OK/FAIL events would be
    lost (ctrl_tcp sends events only to connected clients).
    """

    def __init__(self, directory, wav=None):
        """
        @param directory: a new directory for its config and recordings
        @param wav: an 8 kHz mono 16-bit WAV it sends as its microphone
            (the C{ausine} source is 48 kHz only, which G.711 cannot carry)
        """
        self.directory = str(directory)
        self.snd_path = os.path.join(self.directory, "snd")
        os.makedirs(self.snd_path, exist_ok=True)
        self.sip_port = sip_port()
        self.ctrl_port = free_port()
        self.lines = []
        self.events = []
        self._output = queue.Queue()
        self._events = queue.Queue()
        self._responses = queue.Queue()
        self._tokens = itertools.count(1)
        self._write_config(wav)
        self.process = subprocess.Popen(
            ["baresip", "-n", "127.0.0.1", "-f", self.directory],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            cwd=self.directory,
        )
        threading.Thread(target=self._read_output, daemon=True).start()
        try:
            # Printed once every module is loaded, ctrl_tcp's listener included.
            self._wait_for_output("baresip is ready.")
            self._socket = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=DEADLINE)
        except BaseException:
            self.kill()
            raise
        self._socket.settimeout(None)
        threading.Thread(target=self._read_control, daemon=True).start()

    def _write_config(self, wav):
        source = f"aufile,{wav}" if wav else "aubridge,nil"
        settings = [
            ("poll_method", "epoll"),
            ("sip_listen", f"127.0.0.1:{self.sip_port}"),
            # No sound card here: aubridge,nil plays into nothing; sndfile
            # (below) still dumps what was received.
            ("audio_player", "aubridge,nil"),
            ("audio_alert", "aubridge,nil"),
            ("audio_source", source),
            ("audio_path", "/usr/share/baresip"),
            # Never the host's resolver: every URI here is an IP address.
            ("dns_server", "127.0.0.1:53"),
            ("module_path", MODULES),
            ("module", "g711.so"),
            ("module", "aubridge.so"),
            ("module", "aufile.so"),
            ("module", "sndfile.so"),
            # menu provides the commands (dial, hangup, uanew, ...) that
            # ctrl_tcp runs.
            ("module_app", "menu.so"),
            ("module_app", "ctrl_tcp.so"),
            ("ctrl_tcp_listen", f"127.0.0.1:{self.ctrl_port}"),
            ("snd_path", self.snd_path),
            # Else menu redraws a call-status line every few ms in our output.
            ("statmode_default", "off"),
        ]
        with open(os.path.join(self.directory, "config"), "w") as f:
            f.writelines(f"{key}\t{value}\n" for key, value in settings)
        # Without the file baresip writes a template with sample accounts.
        open(os.path.join(self.directory, "accounts"), "w").close()

    def _read_output(self):
        for line in self.process.stdout:
            self._output.put(line)
        self._output.put(None)

    def _wait_for_output(self, text, timeout=DEADLINE):
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._output.get(timeout=max(0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"baresip: no {text!r} within {timeout}s:\n{self.output}")
            if line is None:
                self._output.put(None)
                raise AssertionError(f"baresip exited ({self.process.wait()}) before {text!r}:\n{self.output}")
            self.lines.append(line)
            if text in line:
                return

    @property
    def output(self):
        """Everything baresip printed so far (stdout and stderr)."""
        while True:
            try:
                line = self._output.get_nowait()
            except queue.Empty:
                return "".join(self.lines)
            if line is None:
                self._output.put(None)
                return "".join(self.lines)
            self.lines.append(line)

    def _read_control(self):
        """Split the netstring stream; events and responses go to their queues."""
        buffer = b""
        while True:
            try:
                data = self._socket.recv(65536)
            except OSError:
                data = b""
            if not data:
                self._events.put(None)
                self._responses.put(None)
                return
            buffer += data
            while b":" in buffer:
                length, _, rest = buffer.partition(b":")
                if len(rest) < int(length) + 1:
                    break
                message = json.loads(rest[: int(length)])
                buffer = rest[int(length) + 1 :]
                (self._events if message.get("event") else self._responses).put(message)

    def command(self, name, params=None, timeout=DEADLINE):
        """Run a baresip command; returns its text output, fails if it failed."""
        token = str(next(self._tokens))
        request = {"command": name, "token": token}
        if params is not None:
            request["params"] = params
        self._socket.sendall(netstring(json.dumps(request).encode()))
        deadline = time.monotonic() + timeout
        while True:
            try:
                response = self._responses.get(timeout=max(0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"baresip: no answer to {name!r} within {timeout}s:\n{self.output}")
            if response is None:
                self._responses.put(None)
                raise AssertionError(f"baresip closed ctrl_tcp before answering {name!r}:\n{self.output}")
            if response.get("token") == token:
                if not response.get("ok"):
                    raise AssertionError(f"baresip: {name} {params!r} failed: {response}\n{self.output}")
                return response.get("data", "")

    def wait_for_event(self, *types, timeout=DEADLINE):
        """
        The next event whose type is one of C{types} (a dict: C{type},
        C{class}, C{accountaor}, C{param}, and for calls C{direction},
        C{peeruri}, C{id}); earlier events stay in L{events}.  Give the
        failure types too (C{"REGISTER_OK", "REGISTER_FAIL"}) so a failure
        is reported at once rather than at the deadline.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self._events.get(timeout=max(0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"baresip: no {types} within {timeout}s; events {self.events}:\n{self.output}")
            if event is None:
                self._events.put(None)
                raise AssertionError(f"baresip closed ctrl_tcp before {types}; events {self.events}:\n{self.output}")
            self.events.append(event)
            if event.get("type") in types:
                return event

    def register(self, user, password, registrar_port, transport="udp", regint=600, answermode=None, codecs="PCMU,PCMA"):
        """
        Create the account C{sip:user@127.0.0.1:registrar_port}; baresip
        REGISTERs at once (wait for REGISTER_OK or REGISTER_FAIL).
        """
        uri = f"sip:{user}@127.0.0.1:{registrar_port}"
        if transport != "udp":
            uri += f";transport={transport}"
        line = f"<{uri}>;auth_pass={password};regint={regint};audio_codecs={codecs}"
        if answermode:
            line += f";answermode={answermode}"
        return self.command("uanew", line)

    def dial(self, uri):
        return self.command("dial", uri)

    def hangup(self):
        return self.command("hangup")

    def send_dtmf(self, digits):
        """Send C{digits} as RFC 4733 telephone-events in the current call."""
        return self.command("sndcode", digits)

    def reginfo(self):
        return self.command("reginfo")

    def listcalls(self):
        return self.command("listcalls")

    def callstat(self):
        return self.command("callstat")

    def recordings(self):
        """The WAV files sndfile wrote: per call, the audio sent and received."""
        return sorted(os.path.join(self.snd_path, name) for name in os.listdir(self.snd_path))

    def stop(self, timeout=DEADLINE):
        """
        Quit as a user does (baresip then un-REGISTERs and ends its calls);
        kill it if it has not ended by C{timeout}.  Returns the exit status.
        """
        if self.process.poll() is None:
            try:
                self._socket.sendall(netstring(json.dumps({"command": "quit", "token": "quit"}).encode()))
            except OSError:
                pass
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.kill()

    def kill(self):
        """Kill it if running; close our end; returns the exit status."""
        if self.process.poll() is None:
            self.process.kill()
        status = self.process.wait()
        if hasattr(self, "_socket"):
            self._socket.close()
        # The whole output, for failure messages: the reader ends at EOF.
        while (line := self._output.get(timeout=DEADLINE)) is not None:
            self.lines.append(line)
        self._output.put(None)
        return status
