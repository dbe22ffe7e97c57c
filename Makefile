# Two commands from a fresh clone: `make demo` and `make test`.
# Both create (or reuse) a virtualenv in .venv and install what they need.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat setup.cfg setup.py | cksum | cut -d' ' -f1)

.PHONY: demo test bench venv clean browser redis zsh docs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The editable install puts the checkout itself on sys.path (a .pth line, setuptools'
# "compat" mode) rather than an import hook, so that mypy sees the packages too.
$(STAMP): $(BIN)/python setup.cfg setup.py
	$(BIN)/python -m pip install --quiet -e '.[test,fast]' --config-settings editable_mode=compat
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv: $(STAMP)

DEMO_ARGS ?=
demo: $(STAMP)
	$(BIN)/python -m analytics demo $(DEMO_ARGS)

# The inspector's browser tests drive Debian's chromium through playwright
# (never `playwright install`); the Redis queue's tests need a redis-server.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  if command -v apt-get >/dev/null 2>&1; then $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends chromium; \
	  else echo "note: no chromium: the inspector's browser tests will be skipped"; fi; }

redis:
	@[ -n "$$REDIS_URL" ] || command -v redis-server >/dev/null 2>&1 || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  if command -v apt-get >/dev/null 2>&1; then $$SUDO apt-get install -y -qq redis-server || { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server; }; \
	  else echo "note: no redis-server and no REDIS_URL: the Redis queue's tests will be skipped"; fi; }

# The command line's completion script is checked under a real zsh too.
zsh:
	@command -v zsh >/dev/null 2>&1 || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  if command -v apt-get >/dev/null 2>&1; then $$SUDO apt-get install -y -qq zsh || { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq zsh; }; \
	  else echo "note: no zsh: the zsh completion test will be skipped"; fi; }

test: $(STAMP) browser redis zsh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# `make docs`: the Sphinx site (docs/) into docs/_build/html, offline, warnings as errors
# (tests/system/test_docs_build.py runs the same build in `make test`).
docs: $(STAMP)
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html

# `make bench`: cdp-relay (from .venv, and its plain install from .bench-plain-venv)
# against the peer SDKs, which live in their own virtualenv so they never touch
# .venv. BENCH_RUNS=N, BENCH_QUICK=1 and BENCH_ARGS (e.g. --rst, --sdk posthog)
# pass through to benchmarks/run.py.
BENCH_VENV  ?= .bench-venv
BENCH_REQS  := benchmarks/requirements-peers.txt
BENCH_STAMP := $(BENCH_VENV)/.installed-$(shell cat $(BENCH_REQS) 2>/dev/null | cksum | cut -d' ' -f1)

$(BENCH_VENV)/bin/python:
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip

$(BENCH_STAMP): $(BENCH_VENV)/bin/python $(BENCH_REQS)
	$(BENCH_VENV)/bin/python -m pip install --quiet -r $(BENCH_REQS)
	rm -f $(BENCH_VENV)/.installed-*
	touch $(BENCH_STAMP)

# The plain install (no extras: no orjson), as most users have it, for the
# "plain" column of cdp-relay; .venv (with [fast]) gives the "fast" one.
BENCH_PLAIN_VENV  ?= .bench-plain-venv
BENCH_PLAIN_STAMP := $(BENCH_PLAIN_VENV)/.installed-$(shell cat setup.cfg setup.py | cksum | cut -d' ' -f1)

$(BENCH_PLAIN_VENV)/bin/python:
	$(PYTHON) -m venv $(BENCH_PLAIN_VENV)
	$(BENCH_PLAIN_VENV)/bin/python -m pip install --quiet --upgrade pip

$(BENCH_PLAIN_STAMP): $(BENCH_PLAIN_VENV)/bin/python setup.cfg setup.py
	$(BENCH_PLAIN_VENV)/bin/python -m pip install --quiet -e .
	rm -f $(BENCH_PLAIN_VENV)/.installed-*
	touch $(BENCH_PLAIN_STAMP)

bench: $(STAMP) $(BENCH_STAMP) $(BENCH_PLAIN_STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .cache build dist *.egg-info docs/_build
