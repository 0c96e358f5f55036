"""Faults through the real server: nothing acknowledged is ever lost.

* Crash: client threads write through gunicorn (2 workers) until the whole server is
  SIGKILLed at a random moment; after a restart every write that got a 2xx is there
  with exactly its revision and history, and views and ``_changes`` agree with the
  documents. Repeated ``KILL_ROUNDS`` times on one data directory.
* Concurrency: 8 clients racing to update one document with one revision, and a
  mixed concurrent workload whose view equals a rebuild from scratch.
* Disk full: a 4 MiB tmpfs filled to the brim answers 507/500 with a JSON reason,
  keeps every acknowledged write, stays readable, and writes again once space is
  freed; the free-space floor refuses writes before the disk is full.
* Graceful shutdown: SIGTERM lets in-flight requests finish with 2xx.

``pytest -s tests/test_faults.py`` prints the figures; they are also written as JSON
to ``fault-figures.json`` in pytest's base temporary directory (its path is printed).
Set ``SETTEE_FAULT_SEED`` to replay a run's random choices.
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import random
import shutil
import subprocess
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from liveserver import LiveServer
from waiting import until

KILL_ROUNDS = 12              # SIGKILL + restart cycles in the crash test (>= 10)
CRASH_CLIENTS = 6             # client threads writing during each crash round
KILL_AFTER = (0.2, 1.0)       # seconds of load before each SIGKILL
RACE_CLIENTS = 8              # clients racing on one document
RACE_ROUNDS = 20
MIXED_CLIENTS = 8             # clients of the mixed invoice workload
MIXED_OPS = 40                # operations per client in the mixed workload
MIXED_SEED_DOCS = 40          # invoices present before the mixed workload starts
SMALL_FS = "4m"               # the size of the tmpfs the disk-full tests fill
FILL_DOC_BYTES = 8000         # incompressible payload per document when filling
FILL_MAX_REQUESTS = 3000      # safety bound on the fill loops
LONGPOLLS = 4                 # longpolls in flight when SIGTERM arrives
LONGPOLL_MS = 3000
SHUTDOWN_BULK_DOCS = 4000     # documents in the _bulk_docs in flight at SIGTERM

SEED = int(os.environ.get("SETTEE_FAULT_SEED") or random.randrange(1 << 30))
TIMEOUT = 30                  # seconds: no request may take longer (a hang fails)
PLAIN, INVOICES = "plain", "invoices"
CODES = [f"code{i}" for i in range(1, 13)]
TITLES = ["Dive into Python", "Programming Python", "Python Cookbook", "Fluent Python"]
PYTHON_MAP = """\
def fun(doc):
    for item in doc.get("lineItems") or ():
        for code, allocation in (item.get("allocation") or {}).items():
            yield code, allocation["amount"] - allocation["paid"]
"""


# -- figures ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    """record(name, dict): print the figures and merge them into one JSON file."""
    path = tmp_path_factory.getbasetemp() / "fault-figures.json"

    def record(name: str, data: dict) -> None:
        data = {"seed": SEED, **data}
        everything = json.loads(path.read_text()) if path.exists() else {}
        everything[name] = data
        path.write_text(json.dumps(everything, indent=1, sort_keys=True) + "\n")
        print(f"\n[faults] {name}: {json.dumps(data, sort_keys=True)}")
        print(f"[faults] figures written to {path}")

    return record


def server_env(tmp_path) -> dict:
    """Environment for a LiveServer: its scratch files (metrics) under ``tmp_path``."""
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    return {"TMPDIR": str(scratch), "SETTEE_EXAMPLES": "invoices"}   # the talk's view


# -- documents ------------------------------------------------------------------------------
def make_invoice(rng: random.Random) -> dict:
    """An invoice in the design talk's shape (as bench/make_invoices.py makes them)."""
    items, paid_total = [], 0
    for _ in range(rng.randint(1, 3)):
        allocation, amount_total = {}, 0
        for code in rng.sample(CODES, rng.randint(1, 3)):
            amount = rng.randint(100, 50_000)
            paid = rng.choice([0, amount, rng.randint(0, amount)])
            allocation[code] = {"amount": amount / 100, "paid": paid / 100}
            amount_total += amount
            paid_total += paid
        items.append({"description": rng.choice(TITLES), "amount": amount_total / 100,
                      "allocation": allocation})
    payments = [{"type": "VISA", "amount": paid_total / 100}] if paid_total else []
    return {"type": "invoice", "customer": f"customer-{rng.randint(1, 500):03d}",
            "payments": payments, "lineItems": items}


def pay_something(invoice: dict, rng: random.Random) -> dict:
    """A copy of ``invoice`` with one allocation's paid amount changed."""
    new = json.loads(json.dumps(invoice))
    item = rng.choice(new["lineItems"])
    code = rng.choice(sorted(item["allocation"]))
    a = item["allocation"][code]
    a["paid"] = rng.randint(0, round(a["amount"] * 100)) / 100
    new["edits"] = new.get("edits", 0) + 1
    return new


def plain_doc(rng: random.Random, n: int) -> dict:
    return {"n": n, "word": rng.choice(["alpha", "beta", "gamma"]), "x": rng.random()}


def content(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def history(doc: dict) -> list[str]:
    """The revisions of ``doc``'s ``_revisions``, newest first."""
    revs = doc.get("_revisions")
    assert revs, f"{doc.get('_id')}: no _revisions"
    return [f"{revs['start'] - i}-{h}" for i, h in enumerate(revs["ids"])]


def totals_in_cents(docs) -> dict[str, int]:
    """What ar_by_accounting_code?group=true must answer, in exact cents."""
    totals: dict[str, int] = defaultdict(int)
    for doc in docs:
        for item in doc.get("lineItems") or ():
            for code, a in (item.get("allocation") or {}).items():
                totals[code] += round(a["amount"] * 100) - round(a["paid"] * 100)
    return dict(totals)


def rows_in_view(docs) -> int:
    return sum(len(item.get("allocation") or {}) for doc in docs
               for item in doc.get("lineItems") or ())


def check_view_totals(view_rows: list, docs: list[dict], what: str) -> float:
    """The grouped view equals the totals of ``docs``; returns the largest float drift."""
    expected = totals_in_cents(docs)
    got = {row["key"]: row["value"] for row in view_rows}
    assert len(got) == len(view_rows), f"{what}: a key appears twice"
    assert sorted(got) == sorted(expected), \
        f"{what}: keys {sorted(got)} != expected {sorted(expected)}"
    drift = 0.0
    for code, cents in expected.items():
        diff = abs(got[code] - cents / 100)
        assert diff < 1e-6, f"{what}: {code} = {got[code]}, expected {cents / 100}"
        drift = max(drift, diff)
    return drift


def get_json(session, url, **params):
    r = session.get(url, params=params, timeout=TIMEOUT)
    assert r.status_code == 200, (url, r.status_code, r.text[:500])
    return r.json()


# == 1. Crash: SIGKILL mid-load, restart, everything acknowledged is there ================
class DocState:
    """What a client knows of one of its documents."""

    __slots__ = ("db", "id", "chain", "body", "deleted", "pending")

    def __init__(self, db: str, doc_id: str):
        self.db, self.id = db, doc_id
        self.chain: list[str] = []      # every revision acknowledged (or seen landed), oldest first
        self.body: dict | None = None   # content of the last one
        self.deleted = False
        self.pending = None             # (body, deleted) of a write whose answer never came

    @property
    def live(self) -> bool:
        return bool(self.chain) and not self.deleted and self.pending is None


class CrashClient:
    """One client thread: writes its own documents, remembers what was acknowledged."""

    def __init__(self, index: int, seed: int):
        self.index = index
        self.rng = random.Random(seed)
        self.docs: dict[tuple[str, str], DocState] = {}
        self.counter = 0
        self.acks = 0           # acknowledged document writes, all rounds
        self.unanswered = 0     # requests that got no answer (the kill)
        self.errors: list = []  # non-2xx answers and malformed acknowledgements

    # -- bookkeeping ------------------------------------------------------------------
    def new_state(self, db: str, round_: int) -> DocState:
        self.counter += 1
        state = DocState(db, f"r{round_:02d}-c{self.index}-{self.counter:05d}")
        self.docs[(db, state.id)] = state
        return state

    def pick(self, db: str):
        live = [s for s in self.docs.values() if s.db == db and s.live]
        return self.rng.choice(live) if live else None

    def ack(self, state: DocState, rev: str) -> None:
        body, deleted = state.pending
        if not isinstance(rev, str) or rev.split("-")[0] != str(len(state.chain) + 1):
            self.errors.append(f"{state.db}/{state.id}: acknowledged rev {rev!r} after "
                               f"{state.chain[-1:]}")
        state.chain.append(rev)
        state.body, state.deleted, state.pending = body, deleted, None
        self.acks += 1

    # -- the load ---------------------------------------------------------------------
    def run(self, url: str, round_: int, stop: threading.Event) -> None:
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    if not self.step(session, url, round_):
                        return
                except requests.RequestException:
                    self.unanswered += 1        # killed under us: outcome unknown
                    return

    def step(self, s: requests.Session, url: str, round_: int) -> bool:
        rng = self.rng
        op = rng.choices(["put", "update", "delete", "bulk_plain", "bulk_invoices",
                          "update_invoice", "delete_invoice"],
                         weights=[20, 20, 8, 12, 20, 12, 8])[0]
        if op in ("update", "delete", "update_invoice", "delete_invoice"):
            state = self.pick(PLAIN if op in ("update", "delete") else INVOICES)
            if state is None:
                op = "put" if op in ("update", "delete") else "bulk_invoices"
        if op == "put":
            state = self.new_state(PLAIN, round_)
            state.pending = (plain_doc(rng, self.counter), False)
            r = s.put(f"{url}/{PLAIN}/{state.id}", json=state.pending[0], timeout=TIMEOUT)
            return self.single(r, state, 201)
        if op in ("update", "update_invoice"):
            new = (pay_something(state.body, rng) if state.db == INVOICES
                   else {**state.body, "n": state.body["n"] + 1, "x": rng.random()})
            state.pending = (new, False)
            r = s.put(f"{url}/{state.db}/{state.id}", json={**new, "_rev": state.chain[-1]},
                      timeout=TIMEOUT)
            return self.single(r, state, 201)
        if op in ("delete", "delete_invoice"):
            state.pending = (None, True)
            r = s.delete(f"{url}/{state.db}/{state.id}", params={"rev": state.chain[-1]},
                         timeout=TIMEOUT)
            return self.single(r, state, 200)
        db = PLAIN if op == "bulk_plain" else INVOICES
        batch = []
        for _ in range(rng.randint(2, 4)):
            state = self.new_state(db, round_)
            state.pending = (make_invoice(rng) if db == INVOICES
                             else plain_doc(rng, self.counter), False)
            batch.append((state, {"_id": state.id, **state.pending[0]}))
        if rng.random() < 0.5 and (old := self.pick(db)) is not None:
            new = (pay_something(old.body, rng) if db == INVOICES
                   else {**old.body, "n": old.body["n"] + 1})
            old.pending = (new, False)
            batch.append((old, {"_id": old.id, "_rev": old.chain[-1], **new}))
        r = s.post(f"{url}/{db}/_bulk_docs", json={"docs": [d for _, d in batch]},
                   timeout=TIMEOUT)
        if r.status_code != 201:
            self.errors.append(f"_bulk_docs on {db}: {r.status_code} {r.text[:300]}")
            return False
        results = r.json()
        if len(results) != len(batch):
            self.errors.append(f"_bulk_docs on {db}: {len(results)} results for {len(batch)}")
            return False
        for (state, _), result in zip(batch, results):
            if result.get("ok") and result.get("id") == state.id:
                self.ack(state, result.get("rev"))
            else:
                self.errors.append(f"_bulk_docs on {db}, {state.id}: {result}")
                return False
        return True

    def single(self, r: requests.Response, state: DocState, status: int) -> bool:
        body = r.json() if r.headers.get("Content-Type", "").startswith("application/json") \
            else None
        if r.status_code != status or not body or not body.get("ok") or body.get("id") != state.id:
            self.errors.append(f"{r.request.method} {state.db}/{state.id}: "
                               f"{r.status_code} {r.text[:300]}")
            return False
        self.ack(state, body.get("rev"))
        return True


def reconcile(state: DocState, got: dict | None, problems: list, stats: dict) -> None:
    """Check one document as read back after a restart against what its client knows."""
    name = f"{state.db}/{state.id}"
    if got is None:
        if state.chain:
            problems.append(f"{name}: acknowledged {state.chain[-1]} is missing")
        else:
            state.pending = None            # a create whose answer never came: not made
        return
    rev, deleted = got["_rev"], bool(got.get("_deleted"))
    revs = history(got)
    if revs[0] != rev:
        problems.append(f"{name}: _revisions starts at {revs[0]}, _rev is {rev}")
        return
    if state.chain and rev == state.chain[-1]:
        if revs != state.chain[::-1]:
            problems.append(f"{name}: history {revs} != acknowledged {state.chain[::-1]}")
        if deleted != state.deleted:
            problems.append(f"{name}: deleted={deleted}, acknowledged deleted={state.deleted}")
        elif not deleted and content(got) != state.body:
            problems.append(f"{name}: content {content(got)} != acknowledged {state.body}")
        state.pending = None
        stats["docs_checked"] += 1
        return
    if state.pending is not None and revs[1:] == state.chain[::-1]:
        body, pending_deleted = state.pending     # the unanswered write landed: whole?
        if deleted != pending_deleted or (not deleted and content(got) != body):
            problems.append(f"{name}: the unanswered write landed as {got}, sent {state.pending}")
        state.chain.append(rev)
        state.body, state.deleted, state.pending = body, pending_deleted, None
        stats["unanswered_writes_landed"] += 1
        stats["docs_checked"] += 1
        return
    problems.append(f"{name}: at {rev} with history {revs}; acknowledged "
                    f"{state.chain[::-1]}, unanswered write {state.pending}")


def verify_after_restart(url: str, clients: list[CrashClient], stats: dict) -> None:
    """Every acknowledged write, revision history, _changes, _all_docs and the view."""
    problems: list[str] = []
    with requests.Session() as s:
        for db in (PLAIN, INVOICES):
            known = {st.id: st for c in clients for st in c.docs.values() if st.db == db}
            changes = get_json(s, f"{url}/{db}/_changes")["results"]
            ids = [c["id"] for c in changes]
            assert len(ids) == len(set(ids)), f"{db}: _changes lists a document twice"
            current = {}
            for c in changes:
                assert len(c["changes"]) == 1, f"{db}: {c} has several leaves"
                current[c["id"]] = (c["changes"][0]["rev"], bool(c.get("deleted")))
            phantoms = set(current) - set(known)
            assert not phantoms, f"{db}: documents nobody wrote: {sorted(phantoms)[:5]}"

            wanted = [{"id": i, "rev": current[i][0]} if i in current else {"id": i}
                      for i in sorted(known)]
            r = s.post(f"{url}/{db}/_bulk_get", params={"revs": "true"},
                       json={"docs": wanted}, timeout=TIMEOUT)
            assert r.status_code == 200, r.text[:500]
            read = {}
            for result in r.json()["results"]:
                entry = result["docs"][0]
                if "ok" in entry:
                    read[result["id"]] = entry["ok"]
                else:
                    assert entry["error"]["error"] == "not_found", entry
                    assert result["id"] not in current, f"{db}: {entry} but in _changes"
            for doc_id, state in known.items():
                reconcile(state, read.get(doc_id), problems, stats)

            rows = get_json(s, f"{url}/{db}/_all_docs", include_docs="true")
            live = {row["id"]: row for row in rows["rows"]}
            expected_live = {i for i, (_, deleted) in current.items() if not deleted}
            assert set(live) == expected_live, \
                f"{db}: _all_docs and _changes disagree on {set(live) ^ expected_live}"
            assert rows["total_rows"] == len(live)
            for doc_id, row in live.items():
                assert row["value"]["rev"] == current[doc_id][0] == row["doc"]["_rev"], row
                assert content(row["doc"]) == content(read[doc_id]), doc_id
            info = get_json(s, f"{url}/{db}")
            assert info["doc_count"] == len(live), info
            assert info["doc_del_count"] == len(current) - len(live), info
            if db == INVOICES:
                docs = [row["doc"] for row in live.values()]
                view = get_json(s, f"{url}/{INVOICES}/_view/ar_by_accounting_code",
                                group="true")
                stats["max_view_drift"] = max(stats["max_view_drift"], check_view_totals(
                    view["rows"], docs, "ar_by_accounting_code after a restart"))
                flat = get_json(s, f"{url}/{INVOICES}/_view/ar_by_accounting_code",
                                reduce="false")
                assert flat["total_rows"] == len(flat["rows"]) == rows_in_view(docs)
                assert {row["id"] for row in flat["rows"]} <= set(live)
    # creates whose answer never came and that did not land are forgotten
    for c in clients:
        c.docs = {k: st for k, st in c.docs.items() if st.chain or st.pending}
    assert not problems, f"{len(problems)} problems after a restart:\n" + "\n".join(problems[:20])


@pytest.mark.slow
def test_sigkill_mid_load_loses_no_acknowledged_write(tmp_path, figures):
    rng = random.Random(SEED)
    clients = [CrashClient(i, rng.randrange(1 << 30)) for i in range(CRASH_CLIENTS)]
    stats = defaultdict(int, max_view_drift=0.0)
    server = LiveServer(tmp_path / "data", workers=2, **server_env(tmp_path))
    started = time.monotonic()
    try:
        server.start()
        for db in (PLAIN, INVOICES):
            assert requests.put(f"{server.url}/{db}", timeout=TIMEOUT).status_code == 201
        for round_ in range(KILL_ROUNDS):
            stop = threading.Event()
            threads = [threading.Thread(target=c.run, args=(server.url, round_, stop))
                       for c in clients]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(*KILL_AFTER))   # the load runs a random while: what is tested
            server.kill()
            stop.set()
            for t in threads:
                t.join(TIMEOUT)
            assert not any(t.is_alive() for t in threads), "a client hung after the kill"
            errors = [e for c in clients for e in c.errors]
            assert not errors, f"round {round_}: writes failed before the kill: {errors[:5]}"
            stats["kills"] += 1
            server = LiveServer(tmp_path / "data", workers=2, **server_env(tmp_path))
            server.start()
            verify_after_restart(server.url, clients, stats)
        # after the last restart the server still takes writes
        r = requests.put(f"{server.url}/{PLAIN}/after-the-last-kill", json={"ok": 1},
                         timeout=TIMEOUT)
        assert r.status_code == 201, r.text
    finally:
        server.kill()
    acks = sum(c.acks for c in clients)
    assert stats["kills"] == KILL_ROUNDS and acks > 10 * KILL_ROUNDS, (stats, acks)
    figures("crash", {
        "kills_survived": stats["kills"], "acknowledged_writes_checked": acks,
        "document_checks": stats["docs_checked"],
        "documents": sum(len(c.docs) for c in clients),
        "unanswered_requests": sum(c.unanswered for c in clients),
        "unanswered_writes_that_landed": stats["unanswered_writes_landed"],
        "max_view_float_drift": stats["max_view_drift"],
        "seconds": round(time.monotonic() - started, 1)})


# == 2. Concurrency: racing writers, and a view equal to a rebuild ========================
@pytest.mark.slow
def test_racing_writers_and_a_view_equal_to_a_rebuild(tmp_path, figures):
    rng = random.Random(SEED + 1)
    with LiveServer(tmp_path / "data", workers=2, **server_env(tmp_path)) as server:
        url = server.url
        sessions = [requests.Session() for _ in range(max(RACE_CLIENTS, MIXED_CLIENTS))]
        try:
            race = race_on_one_document(url, sessions[:RACE_CLIENTS])
            mixed = mixed_invoice_workload(url, sessions[:MIXED_CLIENTS], rng)
        finally:
            for s in sessions:
                s.close()
    figures("concurrency", {**race, **mixed})


def race_on_one_document(url: str, sessions: list[requests.Session]) -> dict:
    db = f"{url}/race"
    assert sessions[0].put(db, timeout=TIMEOUT).status_code == 201
    rev = sessions[0].put(f"{db}/hot", json={"n": 0}, timeout=TIMEOUT).json()["rev"]
    for s in sessions:                      # open every connection before the races
        assert s.get(db, timeout=TIMEOUT).status_code == 200
    winners = [rev]
    barrier = threading.Barrier(len(sessions))
    with ThreadPoolExecutor(len(sessions)) as pool:
        for round_ in range(RACE_ROUNDS):
            def attempt(i, base=winners[-1], n=round_ + 1):
                barrier.wait(TIMEOUT)
                return sessions[i].put(f"{db}/hot", json={"n": n, "by": i, "_rev": base},
                                       timeout=TIMEOUT)
            results = list(pool.map(attempt, range(len(sessions))))
            statuses = sorted(r.status_code for r in results)
            assert statuses == [201] + [409] * (len(sessions) - 1), \
                f"round {round_}: {statuses}"
            for r in results:
                if r.status_code == 409:
                    assert r.json()["error"] == "conflict", r.text
            (winner,) = [i for i, r in enumerate(results) if r.status_code == 201]
            rev = results[winner].json()["rev"]
            assert rev.startswith(f"{round_ + 2}-"), rev
            doc = get_json(sessions[0], f"{db}/hot")
            assert (doc["n"], doc["by"], doc["_rev"]) == (round_ + 1, winner, rev)
            winners.append(rev)
    doc = get_json(sessions[0], f"{db}/hot", revs="true")
    assert doc["n"] == RACE_ROUNDS, "an update was lost"
    assert history(doc) == winners[::-1], "the history is not the chain of winners"
    return {"race_rounds": RACE_ROUNDS, "race_clients": len(sessions),
            "race_attempts": RACE_ROUNDS * len(sessions)}


def mixed_invoice_workload(url: str, sessions: list[requests.Session],
                           rng: random.Random) -> dict:
    db = f"{url}/{INVOICES}"
    s0 = sessions[0]
    assert s0.put(db, timeout=TIMEOUT).status_code == 201
    seed_docs = [{"_id": f"inv-{n:04d}", **make_invoice(rng)} for n in range(MIXED_SEED_DOCS)]
    r = s0.post(f"{db}/_bulk_docs", json={"docs": seed_docs}, timeout=TIMEOUT)
    assert r.status_code == 201 and all(x.get("ok") for x in r.json())
    get_json(s0, f"{db}/_view/ar_by_accounting_code", group="true")   # an index to update
    counts: dict[str, int] = defaultdict(int)
    bad: list[str] = []
    lock = threading.Lock()

    def note(what: str, r: requests.Response, allowed=(200, 201, 202)):
        with lock:
            counts[f"{what} {r.status_code}"] += 1
            if r.status_code not in allowed:
                bad.append(f"{what}: {r.status_code} {r.text[:200]}")

    def client(i: int, seed: int):
        local = random.Random(seed)
        s = sessions[i]
        for _ in range(MIXED_OPS):
            op = local.choices(["update", "create", "delete", "bulk", "view"],
                               weights=[40, 15, 10, 15, 20])[0]
            doc_id = f"inv-{local.randrange(MIXED_SEED_DOCS + 20):04d}"
            if op == "update":
                r = s.get(f"{db}/{doc_id}", timeout=TIMEOUT)
                note("read", r, (200, 404))
                if r.status_code == 200:
                    new = pay_something(content(r.json()), local)
                    note("update", s.put(f"{db}/{doc_id}", json={**new, "_rev": r.json()["_rev"]},
                                         timeout=TIMEOUT), (201, 409))
            elif op == "create":       # racing creates of one id: one wins, others 409
                note("create", s.put(f"{db}/{doc_id}", json=make_invoice(local),
                                     timeout=TIMEOUT), (201, 409))
            elif op == "delete":
                r = s.get(f"{db}/{doc_id}", timeout=TIMEOUT)
                note("read", r, (200, 404))
                if r.status_code == 200:
                    note("delete", s.delete(f"{db}/{doc_id}", params={"rev": r.json()["_rev"]},
                                            timeout=TIMEOUT), (200, 409, 404))
            elif op == "bulk":
                ids = sorted({f"inv-{local.randrange(MIXED_SEED_DOCS + 20):04d}"
                              for _ in range(4)})
                found = s.post(f"{db}/_all_docs", params={"include_docs": "true"},
                               json={"keys": ids}, timeout=TIMEOUT)
                note("all_docs", found)
                docs = []
                for row in found.json()["rows"]:
                    if row.get("doc"):
                        docs.append({**pay_something(content(row["doc"]), local),
                                     "_id": row["id"], "_rev": row["doc"]["_rev"]})
                    else:
                        docs.append({"_id": row["key"], **make_invoice(local)})
                r = s.post(f"{db}/_bulk_docs", json={"docs": docs}, timeout=TIMEOUT)
                note("bulk", r, (201,))
                if r.status_code == 201:
                    for result in r.json():
                        if not result.get("ok") and result.get("error") != "conflict":
                            with lock:
                                bad.append(f"bulk item: {result}")
            else:                       # a query updates the index while others write
                note("view", s.get(f"{db}/_view/ar_by_accounting_code",
                                   params={"group": "true"}, timeout=TIMEOUT), (200,))

    with ThreadPoolExecutor(len(sessions)) as pool:
        for f in [pool.submit(client, i, rng.randrange(1 << 30)) for i in range(len(sessions))]:
            f.result()
    assert not bad, bad[:10]
    conflicts = sum(v for k, v in counts.items() if k.endswith(" 409"))
    writes = sum(v for k, v in counts.items()
                 if k.split()[0] in ("update", "create", "delete", "bulk") and
                 k.split()[1].startswith("2"))

    docs = [row["doc"] for row in get_json(s0, f"{db}/_all_docs", include_docs="true")["rows"]]
    incremental = get_json(s0, f"{db}/_view/ar_by_accounting_code", group="true")["rows"]
    drift = check_view_totals(incremental, docs, "the incrementally updated view")
    # A rebuild from scratch: the same map and reduce in a new design document.
    r = s0.put(f"{db}/_design/rebuild", json={"language": "python", "views": {
        "ar": {"map": PYTHON_MAP, "reduce": "_sum"}}}, timeout=TIMEOUT)
    assert r.status_code == 201, r.text
    rebuilt = get_json(s0, f"{db}/_design/rebuild/_view/ar", group="true")["rows"]
    check_view_totals(rebuilt, docs, "the rebuilt view")
    assert [row["key"] for row in incremental] == [row["key"] for row in rebuilt]
    for a, b in zip(incremental, rebuilt):
        assert abs(a["value"] - b["value"]) < 1e-6, (a, b)
    flat_old = get_json(s0, f"{db}/_view/ar_by_accounting_code", reduce="false")
    flat_new = get_json(s0, f"{db}/_design/rebuild/_view/ar", reduce="false")
    assert flat_old["rows"] == flat_new["rows"], "the index rows differ from a rebuild"
    assert flat_old["total_rows"] == rows_in_view(docs)
    assert conflicts > 0, "the mixed workload never raced (no 409 at all): too gentle to test"
    return {"mixed_clients": len(sessions), "mixed_ops": len(sessions) * MIXED_OPS,
            "mixed_successful_writes": writes, "mixed_conflicts": conflicts,
            "mixed_view_rows": len(flat_old["rows"]), "mixed_invoices": len(docs),
            "mixed_incremental_view_float_drift": drift}


# == 3. Disk full ===========================================================================
@pytest.fixture
def small_fs(tmp_path):
    """A SMALL_FS tmpfs mounted at tmp_path/small, unmounted afterwards."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL_FS}", "tmpfs",
                           str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a {SMALL_FS} tmpfs: {done.stderr.strip() or done.returncode}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def payload(rng: random.Random) -> str:
    """Text that compression cannot shrink much."""
    return base64.b64encode(rng.randbytes(FILL_DOC_BYTES * 3 // 4)).decode()


def check_error_answer(r: requests.Response, outcomes: dict) -> str:
    """A failed write: 507 insufficient_storage or 500, with a JSON reason."""
    assert r.status_code in (500, 507), f"a failed write answered {r.status_code}: {r.text[:300]}"
    assert r.headers["Content-Type"].startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body.get("reason"), str) and body["reason"], body
    if r.status_code == 507:
        assert body["error"] == "insufficient_storage", body
    key = f"{r.status_code} {body['error']}"
    outcomes[key] = outcomes.get(key, 0) + 1
    return body["reason"]


def fill(s: requests.Session, db: str, rng: random.Random, acked: dict, refused: set,
         outcomes: dict, stop_after: int = 6, pace: float = 0.0) -> int:
    """Write until ``stop_after`` writes in a row fail; returns the failures seen.

    Single PUTs and _bulk_docs of 3 alternate. ``acked`` gets id -> (rev, body) of
    every acknowledged document, ``refused`` the ids of writes answered with an error.
    """
    in_a_row = failures = 0
    for n in range(FILL_MAX_REQUESTS):
        if in_a_row >= stop_after:
            return failures
        ids = [f"fill-{len(acked) + len(refused):05d}-{n}-{k}" for k in range(1 + 2 * (n % 2))]
        bodies = {i: {"blob": payload(rng), "n": n} for i in ids}
        if pace:
            time.sleep(pace)            # pacing the load (see the caller), not a wait
        try:
            if len(ids) == 1:
                r = s.put(f"{db}/{ids[0]}", json=bodies[ids[0]], timeout=TIMEOUT)
            else:
                r = s.post(f"{db}/_bulk_docs", json={"docs": [{"_id": i, **b}
                                                              for i, b in bodies.items()]},
                           timeout=TIMEOUT)
        except requests.RequestException as e:
            pytest.fail(f"a write on a full disk got no answer: {e!r}")
        if r.status_code in (200, 201):
            results = [r.json()] if len(ids) == 1 else r.json()
            for i, result in zip(ids, results):
                assert result.get("ok") and result["id"] == i, result
                acked[i] = (result["rev"], bodies[i])
            in_a_row = 0
        else:
            check_error_answer(r, outcomes)
            refused.update(ids)
            in_a_row += 1
            failures += 1
    pytest.fail(f"{FILL_MAX_REQUESTS} writes and the {SMALL_FS} disk is not full")


def check_readable(s: requests.Session, db: str, acked: dict, refused: set) -> None:
    """The database answers reads, holds every acknowledged document, and no refused one."""
    info = get_json(s, db)
    rows = get_json(s, f"{db}/_all_docs")
    ids = {row["id"] for row in rows["rows"]}
    assert info["doc_count"] == rows["total_rows"] == len(ids), (info, rows["total_rows"])
    assert set(acked) <= ids, f"acknowledged but missing: {sorted(set(acked) - ids)[:5]}"
    assert not ids & refused, f"refused with an error, yet stored: {sorted(ids & refused)[:5]}"
    assert ids == set(acked), f"stored but never written: {sorted(ids - set(acked))[:5]}"
    changes = get_json(s, f"{db}/_changes")["results"]
    assert sorted(c["id"] for c in changes) == sorted(ids)
    if acked:
        r = s.post(f"{db}/_bulk_get", json={"docs": [{"id": i} for i in acked]}, timeout=TIMEOUT)
        assert r.status_code == 200, r.text[:300]
        for result in r.json()["results"]:
            doc = result["docs"][0]["ok"]
            rev, body = acked[result["id"]]
            assert doc["_rev"] == rev and content(doc) == body, result["id"]


@pytest.mark.slow
def test_full_disk_answers_507_keeps_acknowledged_writes_and_recovers(small_fs, tmp_path,
                                                                      figures):
    rng = random.Random(SEED + 2)
    ballast, spare = small_fs / "ballast", small_fs / "spare"
    ballast.write_bytes(os.urandom(512 * 1024))
    spare.write_bytes(os.urandom(256 * 1024))          # freed before the restart
    acked: dict = {}
    refused: set = set()
    outcomes: dict = {}
    server = LiveServer(small_fs, workers=2, SETTEE_STORAGE_FREE_SPACE_FLOOR=0,
                        **server_env(tmp_path))
    with server, requests.Session() as s:
        db, other = f"{server.url}/full", f"{server.url}/other"
        assert s.put(db, timeout=TIMEOUT).status_code == 201
        assert s.put(other, timeout=TIMEOUT).status_code == 201
        other_acked: dict = {}
        for n in range(40):                         # ~300 KB to free later by deleting it
            body = {"blob": payload(rng)}
            r = s.put(f"{other}/o{n}", json=body, timeout=TIMEOUT)
            assert r.status_code == 201, r.text
            other_acked[f"o{n}"] = (r.json()["rev"], body)

        first = fill(s, db, rng, acked, refused, outcomes)
        assert first > 0 and acked
        free_when_full = shutil.disk_usage(small_fs).free
        check_readable(s, db, acked, refused)
        check_readable(s, other, other_acked, set())
        up = s.get(f"{server.url}/_up", timeout=TIMEOUT)
        assert up.status_code in (200, 503), up.text

        # 1. free space by removing a ballast file: writes work again
        ballast.unlink()
        r = s.put(f"{db}/after-ballast", json={"ok": 1}, timeout=TIMEOUT)
        assert r.status_code == 201, f"still refused after freeing 512 KiB: {r.text}"
        acked["after-ballast"] = (r.json()["rev"], {"ok": 1})
        second = fill(s, db, rng, acked, refused, outcomes)
        check_readable(s, db, acked, refused)

        # 2. free space by deleting another database: writes work again
        assert s.delete(other, timeout=TIMEOUT).status_code == 200
        r = s.put(f"{db}/after-delete", json={"ok": 2}, timeout=TIMEOUT)
        assert r.status_code == 201, \
            f"still refused after deleting a ~300 KB database: {r.status_code} {r.text} " \
            f"(free: {shutil.disk_usage(small_fs).free} bytes)"
        acked["after-delete"] = (r.json()["rev"], {"ok": 2})
        check_readable(s, db, acked, refused)
    # and it all survives a restart (which needs room for /_up's probe file)
    spare.unlink()
    with LiveServer(small_fs, workers=2, SETTEE_STORAGE_FREE_SPACE_FLOOR=0,
                    **server_env(tmp_path)) as again, requests.Session() as s:
        check_readable(s, f"{again.url}/full", acked, refused)
    figures("disk_full", {"filesystem": f"tmpfs {SMALL_FS}", "acknowledged_writes_checked":
                          len(acked), "refused_writes": first + second,
                          "refused_documents": len(refused), "failed_answers": outcomes,
                          "free_bytes_when_full": free_when_full, "dropped_connections": 0})


@pytest.mark.slow
def test_free_space_floor_refuses_writes_before_the_disk_is_full(small_fs, tmp_path, figures):
    rng = random.Random(SEED + 3)
    floor = 2 * 1024 * 1024
    ballast = small_fs / "ballast"
    acked: dict = {}
    refused: set = set()
    outcomes: dict = {}
    server = LiveServer(small_fs, workers=2, SETTEE_STORAGE_FREE_SPACE_FLOOR=floor,
                        **server_env(tmp_path))
    with server, requests.Session() as s:
        db = f"{server.url}/floored"
        assert s.put(db, timeout=TIMEOUT).status_code == 201
        # leave 256 KiB above the floor. This close to it every write checks the disk
        # (check_writable: far above it a check is good for a second); the writes are
        # paced (~20 a second) all the same, so a check a second old would still refuse
        # within the 2 MiB below the floor: a margin, not a wait
        ballast.write_bytes(os.urandom(shutil.disk_usage(small_fs).free - floor - 256 * 1024))
        fill(s, db, rng, acked, refused, outcomes, stop_after=1, pace=0.05)
        free = shutil.disk_usage(small_fs).free
        assert 1024 * 1024 < free < floor, \
            f"{free} bytes free at the first refusal: the floor did not refuse first"
        # the next write is refused too, at once: near the floor every write checks
        r = s.put(f"{db}/one-more", json={"x": 1}, timeout=TIMEOUT)
        reason = check_error_answer(r, outcomes)
        assert r.status_code == 507 and "free" in reason, reason
        refused.add("one-more")
        check_readable(s, db, acked, refused)
        up = s.get(f"{server.url}/_up", timeout=TIMEOUT)
        assert up.status_code == 503 and "floor" in up.json()["reason"], up.text
        ballast.unlink()                     # back above the floor: the next write sees it
        r = s.put(f"{db}/above-the-floor", json={"x": 2}, timeout=TIMEOUT)
        assert r.status_code == 201, r.text
        assert s.get(f"{server.url}/_up", timeout=TIMEOUT).status_code == 200
    figures("free_space_floor_live", {"floor_bytes": floor, "free_bytes_when_refused": free,
                                      "acknowledged_writes_checked": len(acked),
                                      "failed_answers": outcomes})


def test_free_space_floor_above_free_space_refuses_every_write_in_process(tmp_path, figures):
    from httpclient import make_app
    app = make_app(tmp_path, storage_free_space_floor=0)
    app.put("/db", status=201)
    rev = app.put_json("/db/doc", {"a": 1}, status=201).json["rev"]
    before = app.get("/db").json
    floored = make_app(tmp_path, storage_free_space_floor=1 << 50)
    refused = {
        "PUT /db/doc": floored.put_json("/db/doc", {"a": 2, "_rev": rev}, status=507),
        "PUT /db/new": floored.put_json("/db/new", {"a": 3}, status=507),
        "POST /db": floored.post_json("/db", {"a": 4}, status=507),
        "POST /db/_bulk_docs": floored.post_json("/db/_bulk_docs", {"docs": [{"a": 5}]},
                                                 status=507),
        "DELETE /db/doc": floored.delete(f"/db/doc?rev={rev}", status=507),
        "PUT /db2": floored.put("/db2", status=507),
    }
    for what, r in refused.items():
        assert r.json["error"] == "insufficient_storage", (what, r.json)
        assert r.content_type == "application/json", what
    assert floored.get("/db").json == before               # nothing was written
    assert floored.get("/db/doc").json["a"] == 1
    assert floored.get("/db/_all_docs").json["total_rows"] == 1
    floored.get("/db2", status=404)
    assert floored.get("/_up", status=503).json["error"] == "unavailable"
    assert app.get("/_up", status=200)
    figures("free_space_floor_in_process", {"refused_writes": len(refused)})


# == 4. Graceful shutdown ====================================================================
@pytest.mark.slow
def test_sigterm_lets_in_flight_requests_finish(tmp_path, figures):
    rng = random.Random(SEED + 4)
    server = LiveServer(tmp_path / "data", workers=2, **server_env(tmp_path))
    server.start()
    try:
        db, quiet = f"{server.url}/shutdown", f"{server.url}/quiet"
        assert requests.put(db, timeout=TIMEOUT).status_code == 201
        assert requests.put(quiet, timeout=TIMEOUT).status_code == 201   # no writes: the
        since = get_json(requests, f"{quiet}/_changes", since="now")["last_seq"]  # polls wait
        docs = [{"_id": f"b{n:05d}", "text": payload(rng)[:400], "n": n}
                for n in range(SHUTDOWN_BULK_DOCS)]
        results: dict[str, tuple] = {}

        def longpoll(i):
            with requests.Session() as s:
                r = s.get(f"{quiet}/_changes", params={"feed": "longpoll", "since": since,
                                                   "timeout": LONGPOLL_MS}, timeout=TIMEOUT)
                results[f"longpoll{i}"] = (r.status_code, r.json(), time.monotonic())

        bulk_conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
        bulk_sent = threading.Event()

        def bulk():
            sent = time.monotonic()
            bulk_conn.request("POST", "/shutdown/_bulk_docs", json.dumps({"docs": docs}),
                              {"Content-Type": "application/json"})
            bulk_sent.set()
            r = bulk_conn.getresponse()
            results["bulk"] = (r.status, json.loads(r.read()), time.monotonic(), sent)

        threads = [threading.Thread(target=longpoll, args=(i,)) for i in range(LONGPOLLS)]
        for t in threads:
            t.start()
        assert server.await_waiting(LONGPOLLS)
        threads.append(threading.Thread(target=bulk))
        threads[-1].start()
        # the server has read the whole bulk request: it is being written
        assert until(lambda: bulk_sent.is_set() and server.has_read(bulk_conn.sock))
        proc = server.proc
        sigterm = time.monotonic()
        server.stop()                        # SIGTERM; SIGKILL only after 30 s
        stopped = time.monotonic()
        for t in threads:
            t.join(TIMEOUT)
        assert not any(t.is_alive() for t in threads)
        assert proc.returncode == 0, f"gunicorn exited with {proc.returncode}"
        assert stopped - sigterm < 25, "the server did not stop by itself"
        assert sorted(results) == sorted([f"longpoll{i}" for i in range(LONGPOLLS)] + ["bulk"]), \
            f"in-flight requests lost: {sorted(results)}"
        for name, (status, body, *_) in results.items():
            assert 200 <= status < 300, (name, status, body)
        status, written, bulk_done, bulk_sent = results["bulk"]
        assert len(written) == len(docs) and all(x.get("ok") for x in written)
        for i in range(LONGPOLLS):
            status, body, done = results[f"longpoll{i}"]
            assert body["results"] == [] and "last_seq" in body, body
            assert done > sigterm, "the longpoll was not in flight at SIGTERM"
        bulk_conn.close()
        with pytest.raises(requests.ConnectionError):
            requests.get(server.url, timeout=5)
        with LiveServer(tmp_path / "data", workers=2, **server_env(tmp_path)) as again:
            rows = get_json(requests, f"{again.url}/shutdown/_all_docs")["rows"]
            assert {row["id"]: row["value"]["rev"] for row in rows} == \
                {x["id"]: x["rev"] for x in written}
    finally:
        server.kill()
    figures("graceful_shutdown", {
        "in_flight_at_sigterm": len(results), "longpolls": LONGPOLLS,
        "bulk_docs": len(docs), "bulk_still_running_at_sigterm": bulk_done > sigterm,
        "longpolls_done_after_sigterm_s": round(max(
            results[f"longpoll{i}"][2] for i in range(LONGPOLLS)) - sigterm, 2),
        "seconds_sigterm_to_exit": round(stopped - sigterm, 2)})


# -- a database deleted while a request uses it -------------------------------------------
def test_a_database_deleted_during_a_request_answers_404_not_500(tmp_path, monkeypatch):
    """Another worker's DELETE lands between a request's lookup of the database and its
    reads: the files are gone from under it. The answer is what it would have been a
    moment later (404), not a server error; and a create racing a delete still makes
    the database."""
    from httpclient import make_app, put

    from settee.config import load_settings
    from settee.store import Catalog, Database
    app = make_app(tmp_path)
    app.put("/db", status=201)
    put(app, "/db/doc", {"n": 1}, status=201)
    other = Catalog(load_settings(env={}, storage_data_dir=str(tmp_path / "data")))
    real = Database.__getitem__

    def deleted_first(self, key):
        if self.name == "db" and other.exists("db"):
            other.delete("db")                  # the other worker's DELETE, just now
        return real(self, key)
    monkeypatch.setattr(Database, "__getitem__", deleted_first)
    answers = []                # a thread of its own: a new connection to the gone file
    reader = threading.Thread(target=lambda: answers.append(app.get("/db/doc",
                                                                    expect_errors=True)))
    reader.start()
    reader.join(30)
    assert answers[0].status_int == 404, answers[0].body
    assert answers[0].json == {"error": "not_found", "reason": "Database does not exist."}
    monkeypatch.undo()
    real_open = other.locations.__class__.open

    def removed_first(self, name, generation):  # a DELETE between mkdir and open
        if name == "racy" and not getattr(removed_first, "done", False):
            removed_first.done = True
            other.locations.drop(name)
        return real_open(self, name, generation)
    monkeypatch.setattr(other.locations.__class__, "open", removed_first)
    assert app.put("/racy", expect_errors=True).status_int == 201
    assert app.get("/racy").json["db_name"] == "racy"
    other.close()
