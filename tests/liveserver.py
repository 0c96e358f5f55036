"""A real Settee under gunicorn on a free loopback port, for end-to-end tests."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests
from waiting import until

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "config" / "gunicorn.conf.py"


LISTENING = re.compile(rb"Listening at: http://127\.0\.0\.1:(\d+)")


class LiveServer:
    """``with LiveServer(data_dir, workers=2) as server: requests.get(server.url + "/")``."""

    def __init__(self, data_dir, workers: int = 2, threads: int = 16, **env):
        self.data_dir = str(data_dir)
        self.port = 0                   # the server binds any free port and logs which
        self.url = ""
        self.env = {**os.environ, "SETTEE_BIND": "127.0.0.1:0",
                    "SETTEE_WORKERS": str(workers), "SETTEE_THREADS": str(threads),
                    "SETTEE_DATA_DIR": self.data_dir, "SETTEE_SERVER_ACCESS_LOG": "",
                    **{k: str(v) for k, v in env.items()}}
        self.proc: subprocess.Popen | None = None
        self.log = Path(self.data_dir).parent / f"gunicorn-{uuid.uuid4().hex[:12]}.log"

    def start(self, timeout: float = 30) -> LiveServer:
        """Start gunicorn on a port it chooses (no port is probed and released first,
        which another process could take meanwhile) and wait for it to answer."""
        os.makedirs(self.data_dir, exist_ok=True)
        self._log = open(self.log, "ab")
        offset = self._log.tell()
        self.proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(CONF)],
                                     env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                self._log.close()
                raise RuntimeError(f"gunicorn exited: {self.log.read_text()[-2000:]}")
            if not self.port:
                with open(self.log, "rb") as f:
                    f.seek(offset)
                    found = LISTENING.search(f.read())
                if found:
                    self.port = int(found.group(1))
                    self.url = f"http://127.0.0.1:{self.port}"
                    self.env["SETTEE_BIND"] = f"127.0.0.1:{self.port}"   # a restart: same port
            if self.port:
                try:
                    if requests.get(self.url + "/_up", timeout=5).status_code == 200:
                        return self
                except requests.RequestException:     # busy booting
                    pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("gunicorn did not answer /_up in time")

    def kill(self) -> None:
        """SIGKILL the whole server (master and workers) at once: a crash."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.proc = None
            self._log.close()

    def stop(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
                return
            self.proc = None
            self._log.close()

    def worker_pids(self, count: int, timeout: float = 30) -> list[int]:
        """The pids of the server's ``count`` live workers, once it has that many."""
        deadline = time.monotonic() + timeout
        while True:
            pids = []
            for entry in os.listdir("/proc"):
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        state, ppid = f.read().rsplit(")", 1)[1].split()[:2]
                    if entry.isdigit() and int(ppid) == self.proc.pid and state != "Z":
                        pids.append(int(entry))
                except (OSError, ValueError):
                    continue
            if len(pids) == count or time.monotonic() > deadline:
                return sorted(pids)
            time.sleep(0.05)

    def connections(self) -> dict[str, float]:
        """The ``settee_connections`` gauges (open, reading_head, waiting), summed over
        the workers, from the metrics (admin party or ``auth``-less access needed)."""
        text = requests.get(self.url + "/_metrics", timeout=5).text
        found = {}
        for line in text.splitlines():
            if line.startswith("settee_connections{"):
                state = line.split('state="', 1)[1].split('"', 1)[0]
                found[state] = float(line.rsplit(" ", 1)[1])
        return found

    def await_waiting(self, count: int, timeout: float = 10.0) -> bool:
        """Whether ``count`` responses are waiting (parked feeds) within ``timeout``."""
        return bool(until(lambda: self.connections().get("waiting", 0) >= count, timeout))

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
