# Chamicore: the two commands of the README, and a few more for developers.
#   make up     install into .venv and start everything on the embedded PostgreSQL
#   make test   install into .venv (plus the system packages the tests boot) and run the tests

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Real parts the tests start: iPXE firmware in QEMU, cloud-init's client, Kea (and busybox udhcpc), nginx and wrk for bench/, Prometheus and promtool for deploy/prometheus.
SYSTEM_PACKAGES := qemu-system-x86 ipxe-qemu ovmf ipxe cloud-init nginx wrk kea-dhcp4-server kea-ctrl-agent busybox iproute2 chromium prometheus openipmi

# Every Python package, with its hashes: what CI tested is what a fresh clone installs.
LOCK := requirements.lock
PIP_TOOLS := pip-tools==7.6.2

.PHONY: up test install system-deps bench lint lock clean

up: install
	$(VENV)/bin/chamicore up

test: install system-deps
	$(PY) -m pytest

install: $(VENV)/.installed

# A new lock makes a new virtualenv: nothing left over from an older resolution.
$(VENV)/.locked: $(LOCK)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	touch $@

# Chamicore itself, built with the locked setuptools and Cython.
$(VENV)/.installed: $(VENV)/.locked pyproject.toml setup.py $(wildcard hotpath/*.pyx)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	$(PY) -c "import hotpath._render, hotpath._dispatch, hotpath._activity"  # the compiled boot path must load
	touch $@

# Refresh the lock to the newest releases pyproject.toml allows (then run the tests and commit it).
lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet '$(PIP_TOOLS)'
	.venv-lock/bin/pip-compile --upgrade --all-extras --all-build-deps --allow-unsafe --generate-hashes \
		--strip-extras --no-emit-index-url --no-emit-find-links --quiet -o $(LOCK) pyproject.toml

system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:" $$missing; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

bench: install system-deps
	$(PY) -m pytest bench/ --benchmark-columns=min,median,mean,max,rounds -p no:cacheprovider
	$(PY) -m bench.bootstorm
	$(PY) -m bench.scalecurve
	$(PY) -m bench.adminload
	$(PY) -m bench.openchami_poll
	$(PY) -m bench.console
	$(PY) -m bench.tracing
	$(PY) -m bench.metrics
	$(PY) -m bench.bootfeatures --rounds 3
	$(PY) -m bench.stages --storm --rounds 3

lint: install
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) .venv-lock build *.egg-info hotpath/_*.c hotpath/*.so
