# Two entry points: `make demo` and `make test`. Downloads are cached outside the checkout.
VENV    := .venv
PY      := $(VENV)/bin/python
CACHE   ?= /var/cache/cog-tests
APT_PKGS := bubblewrap busybox-static gpgv debian-archive-keyring skopeo umoci procps docker.io docker-registry apache2-utils
export PIP_CACHE_DIR := $(CACHE)/pip

.PHONY: demo test lint system-deps test-fixtures

$(VENV)/.installed: pyproject.toml VERSION.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

# Tests use real bubblewrap and a static busybox; as root we install them, otherwise they must
# already be there (the tests fail, never skip, when a component is missing).
system-deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    mkdir -p $(CACHE)/apt; \
	    apt-get update -qq && apt-get install -y -qq -o Dir::Cache::archives=$(CACHE)/apt $$missing; \
	  else echo "missing system packages:$$missing (run as root or install them)"; exit 1; fi; \
	fi

# A frozen copy of the Debian files the tests use (signed indexes, the .debs of the test
# closure), fetched once into the cache; the tests serve it on loopback and stay offline.
test-fixtures: $(VENV)/.installed $(CACHE)/cog-0.23.1-venv/.installed
	COG_CACHE_DIR=$(CACHE)/cog $(PY) -m tests.debian_mirror $(CACHE)/debian-mirror
	UV_CACHE_DIR=$(CACHE)/uv $(PY) -m tests.wheel_cache $(CACHE)/wheels

# Cog's own server, for the runtime's differential tests (and the runtime benchmark).
$(CACHE)/cog-0.23.1-venv/.installed:
	python3 -m venv $(CACHE)/cog-0.23.1-venv
	$(CACHE)/cog-0.23.1-venv/bin/pip install -q cog==0.23.1 coglet==0.23.1
	touch $@

# The real job on a fresh machine: build examples/hello-world into an image (Debian packages and
# wheels fetched and pinned on the way), then run the image and return one prediction from it.
demo: system-deps $(VENV)/.installed
	cd examples/hello-world && ../../$(VENV)/bin/cog build
	cd examples/hello-world && ../../$(VENV)/bin/cog predict .cog/image -i text=world

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: system-deps $(VENV)/.installed lint test-fixtures
	COG_TEST_CACHE=$(CACHE) $(PY) -m pytest -q
