# The two commands of the README: `make run` and `make test`. Both install what is missing
# on a Debian 12 machine first (apt packages, the virtualenv, the pinned Python packages).

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := python3-venv python3-dev python3-guestfs libguestfs-tools qemu-utils \
	qemu-system-x86 debootstrap linux-image-amd64 chromium gnupg openssl gdisk curl \
	netcat-openbsd ca-certificates \
	busybox dropbear-bin ovmf seabios dosfstools openssh-client
export PYTEST_ADDOPTS ?=
export FIXTURE_CACHE_DIR ?= /var/cache/image-factory-fixtures
# Local development: plain HTTP cookies and a generated secret key (see .env.example).
export FACTORY_LOCAL ?= 1
export DJANGO_SECRET_KEY_FILE ?= $(CURDIR)/var/secret_key
export DEMO_UPSTREAM_PORT ?= 8081
export DEMO_UPSTREAM_URL ?= http://127.0.0.1:$(DEMO_UPSTREAM_PORT)/debian-12/

.PHONY: run test lint setup apt venv migrate demo demo-check test-fast test-browser test-guestfs test-vm test-postgres test-extra test-all clean

# --- set-up ---------------------------------------------------------------------------------
setup: apt venv var/secret_key

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.lock
	@test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	@$(PIP) install -q --upgrade pip >/dev/null
	$(PIP) install -q -r requirements.lock
	@$(PY) -c "import guestfs" || { echo "python3-guestfs is not importable from the virtualenv"; exit 1; }
	@touch $@

var/secret_key:
	@mkdir -p var && umask 077 && $(PY) -c "import secrets; print(secrets.token_urlsafe(50))" > $@

migrate: setup
	$(PY) manage.py migrate --noinput

demo: migrate
	$(PY) manage.py loaddemo
	$(PY) manage.py register_schedules
	$(PY) manage.py ensure_admin

# --- the two commands -----------------------------------------------------------------------
run: demo
	$(PY) manage.py collectstatic --noinput -v 0
	bin/run-all

# Every tier, in two lanes at once (bin/test-tiers prints each tier's output and time).
test: setup
	@bin/test-tiers

# The fast tier and its PostgreSQL pass run in a random order (pytest-randomly), so that a test
# depending on another's leftovers fails; the seed is printed, and `make test-fast
# TEST_SEED=<seed>` replays that order. The slow tiers keep a fixed order (tests/conftest.py).
ifndef TEST_SEED
TEST_SEED := $(shell od -An -N4 -tu4 /dev/urandom | tr -d ' ')
endif
RANDOM_ORDER = -p randomly --randomly-seed=$(TEST_SEED)
FIXED_ORDER = -p no:randomly
# The fast tier and the PostgreSQL pass spread their tests over one process per CPU
# (pytest-xdist; each process has its own test database): `make test` runs them beside the
# libguestfs lane, and a CPU that lane leaves idle is taken.
TEST_WORKERS ?= auto

test-fast:
	@echo "Random test order, seed $(TEST_SEED) (replay: make test-fast TEST_SEED=$(TEST_SEED))"
	$(PY) -m pytest -m "not guestfs and not vm and not browser" -q -n $(TEST_WORKERS) $(RANDOM_ORDER); rc=$$?; [ $$rc = 0 ] || [ $$rc = 5 ]

test-browser:
	$(PY) -m pytest -m "browser and not guestfs and not vm" -q $(FIXED_ORDER); rc=$$?; [ $$rc = 0 ] || [ $$rc = 5 ]

# Real libguestfs appliances (customize, whole builds, a build followed in the browser).
test-guestfs:
	$(PY) -m pytest -m "guestfs and not vm and not extra" -q --durations=15 $(FIXED_ORDER); rc=$$?; [ $$rc = 0 ] || [ $$rc = 5 ]

# Real VMs under localcloud's QEMU backend: the twelve checks in one zone (UEFI), a broken
# image, a server that cannot start. `make test` runs this tier alone, after the
# others: guests booting under emulation on a CPU that other work keeps busy miss deadlines.
test-vm:
	$(PY) -m pytest -m "vm and not extra" -q --durations=15 $(FIXED_ORDER); rc=$$?; [ $$rc = 0 ] || [ $$rc = 5 ]

# The database-dependent tests again on PostgreSQL (installed and started if missing): those
# that use the database (TESTS_DATABASE_ONLY, see tests/conftest.py); the others ran on SQLite.
test-postgres:
	bin/postgres-for-tests
	@echo "Random test order, seed $(TEST_SEED) (replay: make test-postgres TEST_SEED=$(TEST_SEED))"
	DATABASE_URL=postgres://factory:factory@127.0.0.1:5432/factory TESTS_DATABASE_ONLY=1 \
	  $(PY) -m pytest -m "not guestfs and not vm and not browser" -q -n $(TEST_WORKERS) $(RANDOM_ORDER); rc=$$?; [ $$rc = 0 ] || [ $$rc = 5 ]

# What other tests prove end to end, run on demand (about 25 minutes): localcloud's VM
# scenarios one by one (boot, power, security groups, hot-plug, rescue, private networks), the
# SeaBIOS fixture boot, checks in two zones, more broken images, customize failures whose
# explanations are also tested without an appliance, and properties of the fixture images.
test-extra: setup
	$(PY) -m pytest -m "extra" -q --durations=25 $(FIXED_ORDER); rc=$$?; [ $$rc = 0 ] || [ $$rc = 5 ]

# Everything: what CI runs (every tier, PostgreSQL included, then lint), then the extra tier.
test-all: setup
	@status=0; EXTRA_TIERS="test-postgres lint" bin/test-tiers || status=1; \
	  $(MAKE) --no-print-directory test-extra || status=1; exit $$status

# A new user's journey, headless (not in CI: about 30 minutes here): make run in a fresh clone,
# log in, Rebuild the local demo, wait until it is tested in every enabled zone, release it.
demo-check: setup
	$(PY) bin/demo_check.py

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run

clean:
	rm -rf var/artefacts var/cache var/staticfiles
