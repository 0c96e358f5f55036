"""A throwaway PostgreSQL for the tests and benchmarks: ``initdb`` + ``pg_ctl`` in a temp dir.

``PostgresServer().start()`` finds the binaries (``PATH``, then the newest
``/usr/lib/postgresql/*/bin``), runs ``initdb`` into a fresh temporary directory and
starts the server listening on a Unix socket in that directory only (no TCP port, so
nothing clashes with another server on this machine), creates a database and offers
its DSN; ``stop()`` stops the server and removes the directory. PostgreSQL refuses to
run as root: when we are root, the directory is handed to an unprivileged user
(``postgres`` if the system has one, else ``nobody``) and both commands run as that
user. ``tcp=True`` also listens on a free loopback port (the benchmark's nodes use it):
a port found free may be taken by another process before PostgreSQL binds it, so when
the server's log says the address is in use, it is started again on another port.

``fast=True`` (the tests' default) turns ``fsync`` off: the cluster is thrown away,
so durability buys nothing there; the benchmark keeps PostgreSQL's durable defaults.

As a script, ``python tests/pgserver.py --install`` installs the binaries with
``apt-get install -y postgresql`` when they are missing (``make test`` runs it), and
``python tests/pgserver.py`` starts a server and prints its DSN until interrupted.
"""
from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

from waiting import until

BINARIES = ("initdb", "pg_ctl")
DATABASE = "settee"
SUPERUSER = "settee"
#: The port of a server on its Unix socket only: it names the socket file
#: (``.s.PGSQL.5432``) in the cluster's own directory, which no other server uses.
SOCKET_PORT = 5432
#: Start-ups on a TCP port before giving up, each on another port: one found free
#: may be taken before PostgreSQL binds it.
TCP_ATTEMPTS = 5
#: What PostgreSQL's log says when its TCP port was taken (its messages are in English
#: under the C.UTF-8 locale the cluster is created with).
PORT_TAKEN = "Address already in use"


def find_bindir() -> str | None:
    """The directory holding ``initdb`` and ``pg_ctl``: PATH first, then the newest install."""
    found = [shutil.which(name) for name in BINARIES]
    if all(found):
        return os.path.dirname(os.path.realpath(found[0]))

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path.split("/postgresql/")[1][:8]))
    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if all(os.access(os.path.join(bindir, name), os.X_OK) for name in BINARIES):
            return bindir
    return None


def install() -> str | None:
    """Install the PostgreSQL server binaries with apt when they are missing (root only)."""
    bindir = find_bindir()
    if bindir or os.geteuid() != 0 or not shutil.which("apt-get"):
        return bindir
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE,
             "env": {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}}
    if subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], **quiet).returncode:
        subprocess.run(["apt-get", "update", "-qq"], **quiet)
        subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], **quiet)
    return find_bindir()


def unprivileged_user() -> str | None:
    """Who runs the server when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("no unprivileged user (postgres or nobody) to run PostgreSQL as")


def candidate_port() -> int:
    """A loopback port free at this moment: only a candidate, another process may take
    it before PostgreSQL binds it (``start()`` then tries another)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One throwaway cluster; ``dsn`` is valid between ``start()`` and ``stop()``."""

    def __init__(self, *, fast: bool = True, tcp: bool = False, max_connections: int = 300):
        self.fast, self.tcp, self.max_connections = fast, tcp, max_connections
        self.dir: str | None = None
        self.port = SOCKET_PORT           # with tcp, the one start() could bind
        self.bindir: str | None = None
        self.user = unprivileged_user()

    @property
    def datadir(self) -> str:
        return os.path.join(self.dir, "data")

    @property
    def dsn(self) -> str:
        return f"host={self.dir} port={self.port} user={SUPERUSER} dbname={DATABASE}"

    @property
    def tcp_dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={DATABASE}"

    def _run(self, argv: list[str], timeout: float = 120) -> None:
        kw = {}
        if self.user is not None:
            kw = {"user": self.user, "group": pwd.getpwnam(self.user).pw_gid, "extra_groups": []}
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              cwd=self.dir, env={**os.environ, "LC_ALL": "C.UTF-8"}, **kw)
        if proc.returncode != 0:
            raise RuntimeError(f"{os.path.basename(argv[0])} failed ({proc.returncode}): "
                               f"{(proc.stderr or proc.stdout)[-1500:]}")

    def start(self) -> PostgresServer:
        self.bindir = find_bindir()
        if self.bindir is None:
            raise RuntimeError("PostgreSQL's initdb/pg_ctl are not installed "
                               "(apt-get install -y postgresql, or make test)")
        self.dir = tempfile.mkdtemp(prefix="settee-pg-")
        try:
            if self.user is not None:
                entry = pwd.getpwnam(self.user)
                os.chown(self.dir, entry.pw_uid, entry.pw_gid)
            self._run([os.path.join(self.bindir, "initdb"), "-D", self.datadir, "-U", SUPERUSER,
                       "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
            attempts = TCP_ATTEMPTS if self.tcp else 1
            for attempt in range(1, attempts + 1):
                if self.tcp:
                    self.port = candidate_port()
                logged = self._log_size()
                try:
                    self._pg_ctl_start()
                    break
                except RuntimeError:
                    if attempt == attempts or PORT_TAKEN not in self.log(since=logged):
                        raise
            self._create_database()
        except BaseException:
            self.stop()
            raise
        return self

    def _pg_ctl_start(self) -> None:
        options = [f"-k {self.dir}", f"-p {self.port}",
                   # pg_ctl passes these through a shell: '' is an empty value.
                   "-c listen_addresses=" + ("127.0.0.1" if self.tcp else "''"),
                   f"-c max_connections={self.max_connections}"]
        if self.fast:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run([os.path.join(self.bindir, "pg_ctl"), "start", "-w", "-t", "60",
                   "-D", self.datadir, "-l", os.path.join(self.dir, "server.log"),
                   "-o", " ".join(options)])

    def _create_database(self) -> None:
        import psycopg
        refused: list[Exception] = []

        def created() -> bool:       # pg_ctl -w saw the server accept connections already
            try:
                with psycopg.connect(f"host={self.dir} port={self.port} user={SUPERUSER} "
                                     "dbname=postgres", autocommit=True) as conn:
                    conn.execute(f"CREATE DATABASE {DATABASE}")
                return True
            except psycopg.OperationalError as e:
                refused.append(e)
                return False
        if not until(created, timeout=30, step=0.1):
            raise refused[-1]

    def _log_size(self) -> int:
        try:
            return os.path.getsize(os.path.join(self.dir, "server.log"))
        except OSError:
            return 0

    def log(self, since: int | None = None) -> str:
        """The server's log: its end, or all that was written after offset ``since``."""
        try:
            with open(os.path.join(self.dir, "server.log"), errors="replace") as f:
                if since is None:
                    return f.read()[-3000:]
                f.seek(since)
                return f.read()
        except (OSError, TypeError):
            return ""

    def stop(self) -> None:
        if self.dir is None:
            return
        if os.path.exists(os.path.join(self.datadir, "postmaster.pid")):
            try:
                self._run([os.path.join(self.bindir, "pg_ctl"), "stop", "-D", self.datadir,
                           "-m", "fast", "-w", "-t", "60"])
            except (RuntimeError, subprocess.TimeoutExpired):
                self._run([os.path.join(self.bindir, "pg_ctl"), "stop", "-D", self.datadir,
                           "-m", "immediate", "-w"])
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def fresh_schema(dsn: str, prefix: str = "t") -> str:
    """A DSN like ``dsn`` whose ``search_path`` is a new, empty schema.

    Settee's tables live in the connection's current schema, so each schema is a
    separate Settee installation: tests get a clean one each, on one server.
    """
    import uuid

    import psycopg
    from psycopg.conninfo import make_conninfo
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    return make_conninfo(dsn, options=f"-c search_path={name}")


def main() -> int:
    if "--install" in sys.argv[1:]:
        bindir = install()
        print(f"PostgreSQL binaries: {bindir or 'not available'}", file=sys.stderr)
        return 0
    with PostgresServer(fast="--durable" not in sys.argv, tcp="--tcp" in sys.argv) as server:
        print(server.tcp_dsn if server.tcp else server.dsn, flush=True)
        try:
            while True:
                signal.pause()               # until interrupted (Ctrl-C)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
