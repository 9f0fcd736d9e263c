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

.PHONY: run test lint setup apt venv migrate demo demo-check test-fast test-browser test-guestfs test-postgres test-vm-extra clean

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

test-fast:
	$(PY) -m pytest -m "not guestfs and not vm and not browser" -q; rc=$$?; [ $$rc = 0 ] || [ $$rc = 5 ]

test-browser:
	$(PY) -m pytest -m "browser and not guestfs and not vm" -q; rc=$$?; [ $$rc = 0 ] || [ $$rc = 5 ]

test-guestfs:
	$(PY) -m pytest -m "(guestfs or vm) and not vm_extra" -q --durations=25; rc=$$?; [ $$rc = 0 ] || [ $$rc = 5 ]

# The database-dependent tests again on PostgreSQL (installed and started if missing): those
# that use the database (TESTS_DATABASE_ONLY, see tests/conftest.py); the others ran on SQLite.
test-postgres:
	bin/postgres-for-tests
	DATABASE_URL=postgres://factory:factory@127.0.0.1:5432/factory TESTS_DATABASE_ONLY=1 \
	  $(PY) -m pytest -m "not guestfs and not vm and not browser" -q; rc=$$?; [ $$rc = 0 ] || [ $$rc = 5 ]

# localcloud's VM backend scenarios one by one (boot, power, security groups, hot-plug, rescue,
# private networks) and the SeaBIOS fixture boot: the checks of `make test` cover the same
# behaviour end to end, so these run on demand (about 15 minutes).
test-vm-extra: setup
	$(PY) -m pytest -m "vm_extra" -q

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
