# Settee: `make run` starts the server, `make test` runs the whole suite.
# Both create the virtual environment and install the project first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
SHARED ?= ../shared

.PHONY: install run test typecheck pouchdb bench bench-http bench-views bench-js bench-nodes bench-connections docker-test clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,lmdb,postgresql]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/settee serve

# The PostgreSQL tests start a throwaway server from initdb/pg_ctl, and the web admin's
# browser tests drive Debian's chromium (tests/browser.py); both are installed with
# apt where missing (as root). Without them those tests skip, saying why.
# Static checks first (ruff: unused and undefined names, import order, closures over
# loop variables; mypy: types, see typecheck; tests/test_structure.py holds the import
# rules), then the suite.
test: install
	$(PY) -m ruff check store server views config examples tests bench
	$(MAKE) --no-print-directory typecheck
	-$(PY) tests/pgserver.py --install
	-$(MAKE) --no-print-directory pouchdb
	-$(PY) tests/browser.py --install
	$(PY) -m pytest -q -p no:cacheprovider

# The static type gate: mypy over the packages as they are installed (settee.store, ...).
# The editable install maps those names onto store/, views/, ... with an import hook
# that mypy cannot follow, so they are linked under build/typecheck/settee, the
# mypy_path of pyproject's [tool.mypy].
TYPED := store views config examples server

typecheck: install
	rm -rf build/typecheck
	mkdir -p build/typecheck/settee
	touch build/typecheck/settee/__init__.py
	for package in $(TYPED); do ln -s ../../../$$package build/typecheck/settee/$$package; done
	$(PY) -m mypy $(addprefix -p settee.,$(TYPED))

# Benchmarks print figures; none is part of the test suite (bench/README.md).
# The benchmarks' data lies in the shared folder beside the project (bench/README.md).
need-shared = @test -e $(1) || { echo "$(2): $(1) is missing: the benchmarks read their data from the project's shared folder, beside this one (or set SHARED=...)"; exit 2; }

bench: install
	$(call need-shared,$(SHARED)/bench/manpages-849.jsonl.gz,make bench)
	$(PY) bench/storage.py --data $(SHARED)/bench/manpages-849.jsonl.gz

# The CPUs' steadiness first: the latency tails below depend on it.
bench-http: install
	$(call need-shared,$(SHARED)/bench/manpages-849.jsonl.gz,make bench-http)
	$(PY) bench/steadiness.py
	$(PY) bench/http_api.py --data $(SHARED)/bench/manpages-849.jsonl.gz

bench-views: install
	$(call need-shared,$(SHARED)/bench/make_invoices.py,make bench-views)
	$(PY) bench/views.py --data $(SHARED)/bench/make_invoices.py

# A JavaScript view beside the same view in Python (bench/README.md).
bench-js: install
	$(call need-shared,$(SHARED)/bench/make_invoices.py,make bench-js)
	$(PY) bench/js_views.py --data $(SHARED)/bench/make_invoices.py
	$(PY) bench/js_vs_pouchdb.py --data $(SHARED)/bench/make_invoices.py

bench-nodes: install
	-$(PY) tests/pgserver.py --install
	$(PY) bench/nodes.py

# Slow clients and waiting feeds beside a GET load (bench/README.md).
bench-connections: install
	$(PY) bench/connections.py

docker-test:
	@test -x $(SHARED)/tools/docker-smoke || { echo "make docker-test: $(SHARED)/tools/docker-smoke is missing: it comes with the project's shared folder, beside this one (or set SHARED=...)"; exit 2; }
	$(SHARED)/tools/docker-smoke .

# PouchDB 9 for the sync tests (tests/server/test_pouchdb.py), from the npm registry at
# the versions of its package-lock.json; without npm those tests skip, saying why.
POUCHDB := tests/server/pouchdb
pouchdb:
	@command -v npm >/dev/null || { echo "npm not found: the PouchDB tests will skip"; exit 0; }; \
	test -d $(POUCHDB)/node_modules/pouchdb-core || npm ci --prefix $(POUCHDB) --no-audit --no-fund --silent

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache
