"""
The node SMSC (``tests/notify/smsc/smsc.js``, npm's ``smpp``: installed by
``make test`` from package.json) as a child process, for the SMS tests and
bench/smpp_submit.py: started on 127.0.0.1 (port 0 unless told), its port
read from its first line, its submit_sm log read back, stopped by process
id (SIGTERM, or SIGKILL to play a crash).
"""

import json
import os
import select
import shutil
import signal
import subprocess
import time

SMSC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "smsc")
SCRIPT = os.path.join(SMSC_DIR, "smsc.js")
DEADLINE = 30


class SMSCProcess:
    def __init__(self, system_id, password, *, port=0, log_path=None, throttle_every=0, refuse=(), hold=(),
                 receipts=True, receipt_delay_ms=0):
        self.system_id = system_id
        self.password = password
        self.port = port
        self.log_path = None if log_path is None else str(log_path)
        self.throttle_every = throttle_every
        self.refuse = tuple(refuse)
        self.hold = tuple(hold)
        self.receipts = receipts
        self.receipt_delay_ms = receipt_delay_ms
        self.process = None

    def argv(self):
        node = shutil.which("node") or shutil.which("nodejs")
        if node is None:
            raise RuntimeError("node is not installed: run `make test` (Debian nodejs, npm)")
        if not os.path.isdir(os.path.join(SMSC_DIR, "node_modules", "smpp")):
            raise RuntimeError(f"npm's smpp is not installed in {SMSC_DIR}: run `make test`")
        argv = [node, SCRIPT, "--system-id", self.system_id, "--password", self.password, "--port", str(self.port)]
        if self.log_path:
            argv += ["--log", self.log_path]
        if self.throttle_every:
            argv += ["--throttle-every", str(self.throttle_every)]
        if self.refuse:
            argv += ["--refuse", ",".join(self.refuse)]
        if self.hold:
            argv += ["--hold", ",".join(self.hold)]
        if not self.receipts:
            argv.append("--no-receipts")
        if self.receipt_delay_ms:
            argv += ["--receipt-delay", str(self.receipt_delay_ms)]
        return argv

    def start(self):
        """Start it (again: on the same port after the first start) and wait until it listens."""
        self.process = subprocess.Popen(self.argv(), stdout=subprocess.PIPE, cwd=SMSC_DIR, start_new_session=True)
        line = self._first_line()
        prefix = "SMSC listening on 127.0.0.1:"
        if not line.startswith(prefix):
            self.kill()
            raise RuntimeError(f"the SMSC did not start: {line!r}")
        self.port = int(line[len(prefix):])
        return self

    def _first_line(self):
        deadline = time.monotonic() + DEADLINE
        data = b""
        fd = self.process.stdout.fileno()
        while not data.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return data.decode(errors="replace")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                data += chunk
        return data.decode(errors="replace").strip()

    @property
    def pid(self):
        return self.process.pid

    def submits(self):
        """The submit_sm it received so far, one dict each, in order."""
        if not self.log_path or not os.path.exists(self.log_path):
            return []
        with open(self.log_path, encoding="utf-8") as f:
            # The last line may be half written while we read.
            return [json.loads(line) for line in f if line.endswith("\n") and line.strip()]

    def kill(self):
        """SIGKILL: a crash, no goodbye to the client."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=DEADLINE)
        self._close()

    def _close(self):
        if self.process is not None and self.process.stdout is not None and not self.process.stdout.closed:
            self.process.stdout.close()

    def stop(self):
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close()
