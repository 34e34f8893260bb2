# The two commands of the README. Everything they need is installed from here.
UV ?= python3 -m uv
UV_VERSION ?= 0.13.9
APT = $(if $(filter 0,$(shell id -u)),sh -c,sudo sh -c)
GO ?= $(or $(shell command -v go),/usr/local/go/bin/go)
ACTIONLINT_VERSION ?= v1.7.12

.PHONY: demo test install browser workflow-lint lint ui stack-down

## make demo: install, start the local stack, generate a week of shop traffic, load it, derive it
demo: install
	$(UV) run retrolytics demo

## make test: install, lint and run the whole test suite against the real stack: two workers
## side by side (each test has its own database and topic), then alone the tests that stop the
## shared PostgreSQL or Kafka
test: install browser workflow-lint lint
	$(UV) run pytest -n 2 --dist worksteal -m "not serial"
	$(UV) run pytest -m serial

install:
	@python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --frozen
	@# Compile the declarations and parse dbt once, so the Dagster code location loads a ready manifest.
	$(UV) run dagster-dbt project prepare-and-package --file orchestration/project.py

# The browser test drives Debian's Chromium; no browser is ever downloaded by a test tool.
browser:
	@test -x /usr/bin/chromium || $(APT) "apt-get update -qq && apt-get install -y -qq chromium"

# actionlint (upstream, built from the Go module proxy: its PyPI wrapper downloads the binary
# when it builds, which fails here) and Debian's shellcheck, which it runs on each `run:` script.
# tests/unit/test_workflows.py lints .github/workflows/ with them.
workflow-lint:
	@test -x .retrolytics/bin/actionlint || \
		GOBIN=$(CURDIR)/.retrolytics/bin $(GO) install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION)
	@command -v shellcheck >/dev/null || $(APT) "apt-get update -qq && apt-get install -y -qq shellcheck"

lint:
	$(UV) run ruff check .
	$(UV) run ruff format --check .

## make ui: the Dagster UI (and its daemon) on http://127.0.0.1:3000
ui: install
	$(UV) run dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

stack-down:
	$(UV) run retrolytics stack down
