"""The ``settee`` command line.

::

    settee serve                  # gunicorn with config/gunicorn.conf.py (SETTEE_* settings)
    settee serve --bind 127.0.0.1:8000 --workers 4
    settee dump DB > db.jsonl     # every document, one JSON line each, with its history
    settee load DB db.jsonl       # load such a file (or any JSON lines of documents)
    settee compact DB             # drop old revision bodies, reclaim space
    settee index DB               # bring every view and index of DB up to date

Every command reads the settings as the server does (defaults, the ``--config``
file or ``SETTEE_CONFIG``, ``SETTEE_*`` variables), so it finds the server's data
directory; ``--data-dir`` overrides it. ``dump`` and ``load`` work on the data
directory directly (the stores are safe for several processes, so the server may
keep running) and show a progress bar when standard error is a terminal.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
from itertools import groupby, islice

import orjson

from settee.config import load_settings
from settee.store import Catalog, ConfigurationError, DatabaseExists, StoreError

LOAD_BATCH = 500
DUMP_CHUNK = 256


def progress(total: int | None, desc: str):
    """A tqdm bar on a terminal, a silent counter otherwise."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="doc", file=sys.stderr,
                disable=not sys.stderr.isatty())


def is_loopback(bind: str) -> bool:
    host = bind.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(a[4][0]).is_loopback
                       for a in socket.getaddrinfo(host, None))
        except (socket.gaierror, ValueError):
            return False


#: ``settee serve`` options -> the settings they set (for gunicorn's configuration,
#: which reads them from the environment).
SERVE_OPTIONS = {"bind": "server_bind", "workers": "server_workers",
                 "threads": "server_threads"}


def serve(settings, extra: list[str]) -> int:
    """Check the address, then become gunicorn with Settee's configuration. Options
    gunicorn would take over Settee's settings (its own ``-b``/``--bind``, ``-w``,
    ``-c``) are refused: ``settee serve``'s own options set them, and checked."""
    clash = [arg for arg in extra
             if arg.split("=", 1)[0] in ("-b", "--bind", "-w", "--workers", "--threads",
                                         "-c", "--config")]
    if clash:
        print(f"settee: use settee serve's own options, not gunicorn's {clash[0]} "
              "(settee serve --help)", file=sys.stderr)
        return 2
    if not settings["auth_admin_user"] and not is_loopback(settings["server_bind"]):
        print(f"settee: refusing to listen on {settings['server_bind']} with no server admin: "
              "set SETTEE_ADMIN_USER and SETTEE_ADMIN_PASSWORD, or bind to 127.0.0.1",
              file=sys.stderr)
        return 2
    if not settings["auth_admin_user"]:
        print(f"settee: no server admin configured; listening on loopback only "
              f"({settings['server_bind']})", file=sys.stderr)
    Catalog(settings).close()       # the data directory and the stack, checked once here
    import settee.config
    conf = os.path.join(os.path.dirname(settee.config.__file__), "gunicorn.conf.py")
    for key in (*SERVE_OPTIONS.values(), "storage_data_dir"):    # as checked, for gunicorn
        os.environ[f"SETTEE_{key.upper()}"] = str(settings[key])
    argv = [sys.executable, "-m", "gunicorn", "-c", conf, *extra]
    os.execv(sys.executable, argv)


def dump(settings, name: str, out) -> int:
    """Every document, deleted ones too, as JSON lines in the order of the changes
    feed: one line per leaf of its revision tree (the winner first, then conflicts
    and deleted branches), each with its ``_revisions``, so a load rebuilds the same
    leaves and winner."""
    db = Catalog(settings).get(name)
    info = db.info()
    with progress(info["doc_count"] + info["doc_del_count"], f"dump {name}") as bar:
        changes = db.changes()
        while chunk := list(islice(changes, DUMP_CHUNK)):
            leaves = db.leaves_many([change.id for change in chunk])
            wanted = [(change.id, leaf.rev) for change in chunk
                      for leaf in leaves.get(change.id, ())]
            for doc in db.revisions(wanted):
                if doc is None:                  # purged or compacted meanwhile
                    continue
                body = dict(doc)
                if doc.meta.revisions:
                    body["_revisions"] = {"start": doc.meta.generation,
                                          "ids": doc.meta.revisions}
                out.write(orjson.dumps(body) + b"\n")
            bar.update(len(chunk))
    out.flush()
    return 0


def load(settings, name: str, path: str) -> int:
    if path != "-" and not os.path.isfile(path):
        print(f"settee: {path}: no such file; nothing loaded", file=sys.stderr)
        return 1
    catalog = Catalog(settings)
    try:
        db = catalog.create(name)
    except DatabaseExists:
        db = catalog.get(name)
    size = os.path.getsize(path) if path != "-" else None
    loaded = failed = 0
    source = sys.stdin.buffer if path == "-" else open(path, "rb")
    from tqdm import tqdm
    with source, tqdm(total=size, desc=f"load {name}", unit="B", unit_scale=True,
                      file=sys.stderr, disable=not sys.stderr.isatty()) as bar:
        batch: list[dict] = []
        for number, line in enumerate(source, 1):
            bar.update(len(line))
            if not line.strip():
                continue
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                print(f"settee: {path}:{number}: not JSON ({e}); skipped", file=sys.stderr)
                failed += 1
                continue
            batch.append(doc)
            if len(batch) >= LOAD_BATCH:
                ok, bad = write_batch(db, batch)
                loaded, failed, batch = loaded + ok, failed + bad, []
        ok, bad = write_batch(db, batch)
        loaded, failed = loaded + ok, failed + bad
    print(f"settee: loaded {loaded} documents into {name}, {failed} failed", file=sys.stderr)
    return 0 if not failed else 1


def write_batch(db, batch: list) -> tuple[int, int]:
    """Write ``batch`` in one transaction, a run of documents with ``_rev`` (stored as
    given) or without (new revisions) at a time; each refused one is reported."""
    ok = bad = 0
    with db.transaction():
        for given, run in groupby(batch, key=lambda doc: isinstance(doc, dict) and "_rev" in doc):
            docs = list(run)
            fine = [doc for doc in docs if isinstance(doc, dict)]
            for doc in docs:
                if not isinstance(doc, dict):
                    print(f"settee: {doc!r}: not a JSON object", file=sys.stderr)
                    bad += 1
            for doc, outcome in zip(fine, db.save_many(fine, new_edits=not given)):
                if isinstance(outcome, StoreError):
                    print(f"settee: {doc.get('_id')}: {outcome}", file=sys.stderr)
                    bad += 1
                else:
                    ok += 1
    return ok, bad


def compact(settings, name: str) -> int:
    dropped = Catalog(settings).get(name).compact()
    print(f"settee: compacted {name}: {dropped} old revision bodies dropped", file=sys.stderr)
    return 0


def index(settings, name: str) -> int:
    """Build or catch up every view of ``name`` (Python modules, design docs, Mango)."""
    from tqdm import tqdm

    from settee.views import definitions
    from settee.views.engine import View
    definitions.load_modules(settings["views_modules"])
    db = Catalog(settings).get(name)
    specs = definitions.module_views(name, settings["views_modules"])
    for _, doc in db.docs("_design/", "_design/\uffff"):
        specs.extend(definitions.design_views(doc).values())
    for spec in specs:
        view = View(db, spec)
        with tqdm(total=view.pending(), desc=f"index {spec.name}", unit="change",
                  file=sys.stderr, disable=not sys.stderr.isatty()) as bar:
            state = view.update(progress=bar.update)
        print(f"settee: {name}/{spec.name}: {state['rows']} rows, up to seq {state['seq']}",
              file=sys.stderr)
    if not specs:
        print(f"settee: {name} has no views", file=sys.stderr)
    return 0


def parser() -> argparse.ArgumentParser:
    # Before or after the command; SUPPRESS: a subcommand's unset default must not
    # overwrite a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS,
                        help="settings file (TOML); default $SETTEE_CONFIG")
    common.add_argument("--data-dir", default=argparse.SUPPRESS,
                        help="the data directory (storage_data_dir); default from the "
                             "settings, $SETTEE_DATA_DIR or ./data")
    top = argparse.ArgumentParser(prog="settee", description="Settee document database",
                                  parents=[common])
    sub = top.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", parents=[common], help="run the HTTP server (gunicorn)",
                       description="Run the HTTP server: gunicorn with Settee's "
                       "configuration. Options not listed here go to gunicorn.")
    p.add_argument("--bind", help="address:port to listen on (server_bind; default "
                                  "127.0.0.1:5984)")
    p.add_argument("--workers", type=int, help="worker processes (server_workers)")
    p.add_argument("--threads", type=int, help="threads per worker (server_threads)")
    for name, text in (("dump", "write every document of DB as JSON lines to stdout"),
                       ("compact", "drop old revision bodies of DB"),
                       ("index", "build or catch up every view and index of DB")):
        sub.add_parser(name, parents=[common], help=text).add_argument("db")
    p = sub.add_parser("load", parents=[common], help="load JSON lines of documents into DB")
    p.add_argument("db")
    p.add_argument("file", help="a .jsonl file, or - for standard input")
    return top


def main(argv: list[str] | None = None) -> int:
    cli = parser()
    args, extra = cli.parse_known_args(argv)
    config = getattr(args, "config", None)
    data_dir = getattr(args, "data_dir", None)
    overrides = {"storage_data_dir": data_dir} if data_dir else {}
    for option, key in SERVE_OPTIONS.items():
        if getattr(args, option, None) is not None:
            overrides[key] = getattr(args, option)
    try:
        settings = load_settings(config, **overrides)
        if args.command == "serve":
            if config:
                os.environ["SETTEE_CONFIG"] = config
            return serve(settings, extra)
        if extra:
            cli.error(f"unrecognized arguments: {' '.join(extra)}")
        if args.command == "dump":
            return dump(settings, args.db, sys.stdout.buffer)
        if args.command == "load":
            return load(settings, args.db, args.file)
        if args.command == "index":
            return index(settings, args.db)
        return compact(settings, args.db)
    except (StoreError, ConfigurationError) as e:
        print(f"settee: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
