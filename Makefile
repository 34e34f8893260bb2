# The two commands of the README. Everything they need is installed from here.
UV ?= python3 -m uv
UV_VERSION ?= 0.13.9
APT = $(if $(filter 0,$(shell id -u)),sh -c,sudo sh -c)
GO ?= $(or $(shell command -v go),/usr/local/go/bin/go)
ACTIONLINT_VERSION ?= v1.7.12

.PHONY: demo test install debian-packages actionlint workflow-lint lint ui stack-down

## make demo: install, start the local stack, generate a week of shop traffic, load it, derive it
demo: install
	$(UV) run retrolytics demo

## make test: install, lint and run the whole test suite against the real stack: two workers
## side by side (each test has its own database and topic), then alone the tests that stop the
## shared PostgreSQL or Kafka. The three installs share nothing, so they run at once (on a
## fresh machine the actionlint build alone takes minutes).
test:
	$(MAKE) --no-print-directory --jobs=3 --output-sync=target install debian-packages actionlint
	$(MAKE) --no-print-directory lint
	$(UV) run pytest -n 2 --dist worksteal -m "not serial"
	$(UV) run pytest -m serial

install:
	@python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --frozen
	@# Compile the declarations and parse dbt once, so the Dagster code location loads a ready manifest.
	$(UV) run dagster-dbt project prepare-and-package --file orchestration/project.py

# Debian's packages the tests use: Chromium, which the browser tests drive (no browser is ever
# downloaded by a test tool), and shellcheck, which actionlint runs on each `run:` script. One
# apt-get for both: two at once would race for dpkg's lock.
DEBIAN_PACKAGES = chromium shellcheck
debian-packages:
	@missing="$$(for package in $(DEBIAN_PACKAGES); do command -v $$package >/dev/null || printf '%s ' $$package; done)"; \
		test -z "$$missing" || $(APT) "apt-get update -qq && apt-get install -y -qq $$missing"

# actionlint, upstream, built from the Go module proxy (its PyPI wrapper downloads the binary when
# it builds, which fails here). tests/unit/test_workflows.py lints .github/workflows/ with it.
actionlint:
	@test -x .retrolytics/bin/actionlint || \
		GOBIN=$(CURDIR)/.retrolytics/bin $(GO) install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION)

workflow-lint: debian-packages actionlint

lint:
	$(UV) run ruff check .
	$(UV) run ruff format --check .

## make ui: the Dagster UI (and its daemon) on http://127.0.0.1:3000
ui: install
	$(UV) run dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

stack-down:
	$(UV) run retrolytics stack down
