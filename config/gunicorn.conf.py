"""gunicorn settings for Settee, taken from Settee's own settings (``SETTEE_*``).

Run as ``settee serve`` or ``gunicorn -c config/gunicorn.conf.py``. Threaded workers
(gunicorn's ``gthread``, which ``server/worker.py`` extends to keep a busy keep-alive
connection on its thread) so a long-polling ``_changes`` request holds a thread, not
a process.
Logs are structured: one JSON object a line, for access and for errors.
"""
import os
import shutil
import tempfile

import settee.store  # noqa: F401  (declares its layers' and backends' settings)
from settee.config import load_settings
from settee.server.balance import ConnectionTable

_settings = load_settings()

wsgi_app = "settee.server.wsgi:application"
bind = [_settings["server_bind"]]
workers = _settings["server_workers"]
threads = _settings["server_threads"]
worker_class = "settee.server.worker.Worker"
timeout = _settings["server_timeout"]
# Open connections per worker; past it a new one is answered 503 (server/worker.py).
worker_connections = _settings["server_max_connections"]
graceful_timeout = 30          # SIGTERM: in-flight requests get this long to finish
keepalive = 5
# The workers share one listening socket, and a new connection goes to the worker
# holding the fewest (server/balance.py): with keep-alive clients, an uneven split
# (the first worker to wake taking a whole burst, or SO_REUSEPORT's hash giving 11/5)
# lasts as long as the connections do.
reuse_port = False
limit_request_line = 8190      # URL size limit (bytes): longer is 414
limit_request_fields = 100
limit_request_field_size = 8190
proc_name = "settee"
# gunicorn's control socket lives in $HOME, shared by every gunicorn of the user: two
# servers would take it from each other. Settee is managed by signals instead.
control_socket_disable = True

accesslog = _settings["server_access_log"] or None
errorlog = "-"
loglevel = _settings["server_log_level"]
logger_class = "settee.server.logs.AccessLogger"   # JSON access lines
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "settee.server.logs.JSONFormatter"},
                   "plain": {"format": "%(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain",
                             "stream": "ext://sys.stdout"},
                 "error_console": {"class": "logging.StreamHandler", "formatter": "json",
                                   "stream": "ext://sys.stderr"}},
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {"gunicorn.access": {"level": "INFO", "handlers": ["console"],
                                    "propagate": False},
                "gunicorn.error": {"level": loglevel.upper(), "handlers": ["error_console"],
                                   "propagate": False},
                "settee": {"level": loglevel.upper(), "handlers": ["error_console"],
                           "propagate": False}},
}

# Prometheus: every worker writes its counters here; a scrape adds them up.
_metrics_dir = os.path.join(tempfile.gettempdir(), f"settee-metrics-{os.getpid()}")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir

# Open connections per worker, shared by all of them: made here, in the master, so
# every worker it forks has it.
_connections = ConnectionTable()


def on_starting(server):
    _warn_when_root(server)
    _refuse_a_taken_address(server)
    _raise_open_file_limit(server)
    shutil.rmtree(_metrics_dir, ignore_errors=True)
    os.makedirs(_metrics_dir)


def _warn_when_root(server):
    """Python design documents (a server admin's) run unsandboxed as the server's
    user: as root, one bad view, or a stolen admin session, owns the machine."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        server.log.warning("settee is running as root: Python design documents run as the "
                           "server's user; run it as an unprivileged user")


def _refuse_a_taken_address(server):
    """Stop at once, with the reason, when an address is taken (gunicorn itself retries
    for five seconds). Bind each TCP address once without SO_REUSEPORT, which fails
    while anything listens there, so that a second server of the same user started
    with ``reuse_port`` could not silently take half of the connections either."""
    import socket
    import sys
    for address in server.cfg.address:
        if not isinstance(address, tuple):
            continue                               # a unix socket path
        host, port = address[0], address[1]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        probe = socket.socket(family, socket.SOCK_STREAM)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
        except OSError as e:
            server.log.error("cannot listen on %s:%s: %s", host, port, e.strerror)
            sys.exit(1)
        finally:
            probe.close()


def _raise_open_file_limit(server):
    """Every connection is a file, and so is every open database's storage: take the
    soft limit up to the hard one (often 1024 of 1048576), for the workers too."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as e:
            server.log.warning("cannot raise the open file limit from %s: %s", soft, e)
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < _settings["server_max_connections"] + 64:
        server.log.warning("the open file limit (%s) is below server_max_connections (%s): "
                           "connections past it will fail", soft,
                           _settings["server_max_connections"])


def child_exit(server, worker):
    _connections.release(getattr(worker, "slot", None))
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    shutil.rmtree(_metrics_dir, ignore_errors=True)


def pre_fork(server, worker):
    """Give the worker about to start a slot in the connection table, and a CPU of its
    own (``server_cpu_affinity``): one that no live worker has, so a restarted worker
    takes its predecessor's."""
    worker.table = _connections
    worker.slot = _connections.claim(getattr(w, "slot", None) for w in server.WORKERS.values())
    worker.cpu = None
    if _settings["server_cpu_affinity"] == "auto" and hasattr(os, "sched_getaffinity"):
        from settee.config.affinity import choose_cpu
        worker.cpu = choose_cpu(os.sched_getaffinity(0),
                                (getattr(w, "cpu", None) for w in server.WORKERS.values()),
                                server.num_workers)


def post_fork(server, worker):
    from settee.config.affinity import pin
    pin(getattr(worker, "cpu", None))
    worker.header_timeout = _settings["server_header_timeout"]
    worker.io_timeout = _settings["server_io_timeout"]


def post_worker_init(worker):
    """Everything made before the first request (modules, the application) lives as
    long as the worker: frozen out of the collector's sight, so that a full collection
    no longer walks it (measured under a PUT load: 22 ms pauses of the whole worker
    became 2-4 ms ones)."""
    import gc
    gc.freeze()
