# Two entry points: `make demo` and `make test`. Downloads are cached outside the checkout.
VENV    := .venv
PY      := $(VENV)/bin/python
CACHE   ?= /var/cache/cog-tests
APT_PKGS := bubblewrap slirp4netns iproute2 busybox-static gpgv debian-archive-keyring skopeo umoci procps docker.io docker-registry apache2-utils
PINS    := .ci/constraints.txt
COG_REF := $(CACHE)/cog-0.23.1-venv
COG_REF_PINS := .ci/cog-0.23.1-constraints.txt
COG_REF_STAMP := $(COG_REF)/.installed-$(firstword $(shell sha256sum $(COG_REF_PINS)))

.PHONY: demo test check lint system-deps test-fixtures pins test-unprivileged

# pip for the venv at $(1): PyPI only and nothing of this machine's pip setup (its config files,
# and PIP_* variables such as extra indexes, find-links or constraints, are shut out; those that
# only say how to connect are kept); downloads cached under $(CACHE)/pip.
KEEP_PIP_VARS := PIP_CERT PIP_CLIENT_CERT PIP_DEFAULT_TIMEOUT PIP_TIMEOUT PIP_RETRIES PIP_PROXY
pip = env $(foreach v,$(filter-out $(KEEP_PIP_VARS),$(filter PIP_%,$(.VARIABLES))),-u $(v)) \
	PIP_CONFIG_FILE=/dev/null PIP_CACHE_DIR=$(CACHE)/pip PIP_DISABLE_PIP_VERSION_CHECK=1 \
	$(1)/bin/pip

# Exactly the versions $(PINS) names: pip, setuptools (to build this project), its dependencies
# and the dev tools (pytest, ruff, mypy, hypothesis ...).
$(VENV)/.installed: pyproject.toml VERSION.txt $(PINS)
	python3 -m venv $(VENV)
	$(call pip,$(VENV)) install -q --upgrade -c $(PINS) pip
	$(call pip,$(VENV)) install -q -c $(PINS) --build-constraint $(PINS) -e '.[dev]'
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
# The wheels are the ones tests/fixtures/wheels.json pins (URL and sha256 each), and no others.
test-fixtures: $(VENV)/.installed $(COG_REF_STAMP)
	COG_CACHE_DIR=$(CACHE)/cog $(PY) -m tests.debian_mirror $(CACHE)/debian-mirror
	$(PY) -m tests.wheel_cache $(CACHE)/wheels

# Cog's own server, for the runtime's differential tests (and the runtime benchmark), at the
# versions $(COG_REF_PINS) names; made anew when they change (the stamp's name holds their
# hash).
$(COG_REF_STAMP):
	rm -rf $(COG_REF)
	python3 -m venv $(COG_REF)
	$(call pip,$(COG_REF)) install -q -c $(COG_REF_PINS) cog==0.23.1 coglet==0.23.1
	touch $@

# Re-resolves every pin against today's PyPI (the dev tools, Cog 0.23.1's venv, the test
# wheels) and rewrites the pin files; review the diff, run `make test`, commit.
pins: $(VENV)/.installed
	rm -rf $(CACHE)/pins-venv $(CACHE)/pins-cog
	python3 -m venv $(CACHE)/pins-venv
	$(call pip,$(CACHE)/pins-venv) install -q --upgrade pip setuptools
	$(call pip,$(CACHE)/pins-venv) install -q -e '.[dev]'
	sed -n '/^#/p' $(PINS) > $(PINS).new
	$(call pip,$(CACHE)/pins-venv) freeze --all --exclude-editable | grep -v '^#' >> $(PINS).new
	mv $(PINS).new $(PINS)
	python3 -m venv $(CACHE)/pins-cog
	$(call pip,$(CACHE)/pins-cog) install -q cog==0.23.1 coglet==0.23.1
	sed -n '/^#/p' $(COG_REF_PINS) > $(COG_REF_PINS).new
	$(call pip,$(CACHE)/pins-cog) freeze | grep -v '^#' >> $(COG_REF_PINS).new
	mv $(COG_REF_PINS).new $(COG_REF_PINS)
	rm -rf $(CACHE)/pins-venv $(CACHE)/pins-cog
	UV_CACHE_DIR=$(CACHE)/uv $(PY) -m tests.wheel_cache --update

# The real job on a fresh machine: build examples/hello-world into an image (Debian packages and
# wheels fetched and pinned on the way), then run the image and return one prediction from it.
demo: system-deps $(VENV)/.installed
	cd examples/hello-world && ../../$(VENV)/bin/cog build
	cd examples/hello-world && ../../$(VENV)/bin/cog predict .cog/image -i text=world

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The fast tier: lint and the tests that build no project and start no engine (conftest.py
# marks the others `slow`), spread over every core (pytest-xdist), in a few minutes.
check: system-deps $(VENV)/.installed lint test-fixtures
	COG_TEST_CACHE=$(CACHE) $(PY) -m pytest -q -n auto -m "not network and not slow"

# Every test, spread over every core a test module at a time (a module shares one store and its
# engines, so its tests stay together), then the timing bounds alone.
test: system-deps $(VENV)/.installed lint test-fixtures
	COG_TEST_CACHE=$(CACHE) $(PY) -m pytest -q -n auto --dist loadfile -m "not network and not serial"
	COG_TEST_CACHE=$(CACHE) $(PY) -m pytest -q -m "serial and not network"
	$(MAKE) test-unprivileged

# The sandbox's tests again as an unprivileged user, when we are root (as CI is): the policy
# must hold whether cog runs as root or not. That user reads a copy of the checkout and a venv
# over Debian's python3 (the checkout and this venv's interpreter may sit in root's home).
UNPRIV_USER := cogtest
UNPRIV := $(CACHE)/unprivileged
UNPRIV_TESTS := tests/builders/test_sandbox_hostile.py tests/builders/test_realise.py tests/builders/test_lock_hook_hostile.py
test-unprivileged: system-deps test-fixtures
	@if [ "$$(id -u)" != 0 ]; then echo "not root: the sandbox's tests ran unprivileged above"; exit 0; fi
	id -u $(UNPRIV_USER) >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin $(UNPRIV_USER)
	# Sandboxes with a network of their own need /dev/net/tun, which udev's default rule makes
	# usable by everyone (0666) and some container images leave to root.
	chmod 0666 /dev/net/tun
	rm -rf $(UNPRIV)/src && mkdir -p $(UNPRIV)/src
	tar --exclude=./.venv --exclude=./.git --exclude='*.egg-info' -cf - . | tar -xf - -C $(UNPRIV)/src
	[ -x $(UNPRIV)/venv/bin/python ] || /usr/bin/python3 -m venv $(UNPRIV)/venv
	$(call pip,$(UNPRIV)/venv) install -q --upgrade -c $(PINS) pip
	$(call pip,$(UNPRIV)/venv) install -q -c $(PINS) --build-constraint $(PINS) -e '$(UNPRIV)/src[dev]'
	chmod -R a+rX $(UNPRIV)
	cd $(UNPRIV)/src && home=$$(mktemp -d) && chown $(UNPRIV_USER) $$home && \
	  setpriv --reuid=$(UNPRIV_USER) --regid=$(UNPRIV_USER) --clear-groups \
	  env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=$$home COG_TEST_CACHE=$(CACHE) \
	  $(UNPRIV)/venv/bin/python -m pytest -q -p no:cacheprovider --basetemp=$$home/pytest \
	  $(UNPRIV_TESTS); status=$$?; rm -rf $$home; exit $$status
