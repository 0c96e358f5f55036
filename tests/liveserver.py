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
TCP_LISTEN = "0A"                      # a listening socket's state in /proc/net/tcp


def tcp_table() -> list[tuple[int, int, str, int, int, str]]:
    """The kernel's TCP sockets (Linux's /proc/net/tcp and tcp6): for each, its local
    port, its remote port, its state, the bytes it sent that its peer has not yet
    acknowledged (tx_queue), the bytes it received that no one has read yet (rx_queue),
    and its inode (0 for a socket no process holds)."""
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            unacked, unread = (int(n, 16) for n in fields[4].split(":"))
            rows.append((int(fields[1].rsplit(":", 1)[1], 16),
                         int(fields[2].rsplit(":", 1)[1], 16), fields[3], unacked, unread,
                         fields[9]))
    return rows


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

    def held_connections(self, pids: list[int]) -> dict[int, set[int]]:
        """For each worker of ``pids``, the client ports of the connections it holds: its
        sockets on the server's port, in any state but listening. A connection whose
        client has closed it is held until the worker notices and closes it too, having
        counted it out of its connections first (server/worker.py)."""
        clients = {inode: remote for local, remote, state, _, _, inode in tcp_table()
                   if local == self.port and state != TCP_LISTEN}
        held = {}
        for pid in pids:
            held[pid] = set()
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue                                   # closed meanwhile
                if link.startswith("socket:[") and link[8:-1] in clients:
                    held[pid].add(clients[link[8:-1]])
        return held

    def has_read(self, sock) -> bool:
        """Whether the server has read everything its client ``sock`` sent: none of it
        waits unacknowledged on the client's side, nor unread on the server's."""
        client = sock.getsockname()[1]
        rows = tcp_table()
        unacked = [n for local, remote, _, n, _, _ in rows
                   if (local, remote) == (client, self.port)]
        unread = [n for local, remote, _, _, n, _ in rows
                  if (local, remote) == (self.port, client)]
        return unacked == [0] and unread == [0]

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
