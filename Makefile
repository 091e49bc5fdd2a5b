# The two commands (see README.rst):
#   make run    fresh machine -> venv, install, demo data, server in the foreground
#   make test   fresh machine -> test dependencies (Debian ones too), whole suite
#               on SQLite and on a real PostgreSQL server it starts itself

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= etc/callcenter.toml
PYTEST_ARGS ?=

# Debian packages the test suite talks to (real counterparts, not fakes).
TEST_DEBIAN_PACKAGES := postgresql sip-tester baresip-core espeak-ng freeradius freeradius-utils \
	libnet-snpp-perl nodejs postfix

.PHONY: run test test-sqlite test-postgresql install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || { .ci/ensure-debian-packages python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip setuptools wheel

# Editable in "compat" mode: twistd finds twisted/plugins/ through the
# source tree only that way.
$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install -q --config-settings editable_mode=compat -e '.[postgres,test]'
	$(BIN)/python -c 'from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))'
	touch $@

install: $(VENV)/.installed

# The IVR's prompts, synthesised with espeak-ng (see callcenter/ivr/prompts.py).
# The build is a cache: after a change of phrases or names it makes only what
# changed.  The stock names read back after a code (1,482 prompts from the
# instrument master) are for `make run` only: they take most of the build
# time, and the tests make their own from a small list.
PROMPT_SOURCES := $(wildcard $(addprefix callcenter/ivr/,prompts.py phrases.py telephone_audio.py say.py stock_names.py pronunciation.py))
var/prompts/manifest.json: $(VENV)/.installed $(PROMPT_SOURCES)
	.ci/ensure-debian-packages espeak-ng
	$(BIN)/callcenter prompts build --dir var/prompts

var/prompts/.stock-names: var/prompts/manifest.json etc/instruments.csv
	$(BIN)/callcenter prompts build --dir var/prompts --instruments etc/instruments.csv
	touch $@

# The demo NAS's shared secret (README.rst): demo only, like the demo passwords.
run: export CALLCENTER_RADIUS_DEMO_SECRET ?= demo-nas-secret
run: install var/prompts/.stock-names
	$(BIN)/callcenter db upgrade --config $(CONFIG)
	$(BIN)/callcenter demo load --config $(CONFIG)
	@echo "Starting callcenter ($(CONFIG)); Ctrl-C stops it.  Demo credentials: README.rst."
	$(BIN)/twistd --pidfile= -n callcenter --config $(CONFIG)

# The SMSC the notification tests talk to is node-smpp (npm), an
# independent SMPP implementation; npm fetches it from its registry.
SMSC_DIR := tests/notify/smsc
$(SMSC_DIR)/node_modules/.installed: $(SMSC_DIR)/package.json $(SMSC_DIR)/package-lock.json
	.ci/ensure-debian-packages nodejs
	@# Debian's nodejs comes without npm; NodeSource's has it (and conflicts with Debian's npm).
	command -v npm >/dev/null || .ci/ensure-debian-packages npm
	cd $(SMSC_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

test: install var/prompts/manifest.json $(SMSC_DIR)/node_modules/.installed
	@# postfix only for its smtp-sink (a pipelining SMTP peer): no mail system set up.
	echo "postfix postfix/main_mailer_type select No configuration" | \
		$$([ "$$(id -u)" -eq 0 ] || echo sudo) debconf-set-selections
	.ci/ensure-debian-packages $(TEST_DEBIAN_PACKAGES)
	@# The two halves at once: most of their time is waiting on real peers
	@# and real-time audio, not CPU.  Each half's output is shown whole.
	$(MAKE) --no-print-directory --keep-going --output-sync=target -j2 test-sqlite test-postgresql

test-sqlite: install
	@echo "=== test suite on SQLite ==="
	$(BIN)/pytest -q --db=sqlite $(PYTEST_ARGS)

test-postgresql: install
	@echo "=== test suite on PostgreSQL ==="
	$(BIN)/pytest -q --db=postgresql $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var build *.egg-info
	find . -name dropin.cache -delete
