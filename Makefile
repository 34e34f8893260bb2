# The two commands of the README. Everything they need is installed from here.
UV ?= python3 -m uv
UV_VERSION ?= 0.13.9

.PHONY: demo test install lint stack-down

## make demo: install, start the local stack, generate a week of shop traffic, load it, derive it
demo: install
	$(UV) run retrolytics demo

## make test: install, lint and run the whole test suite against the real stack
test: install lint
	$(UV) run pytest

install:
	@python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --frozen

lint:
	$(UV) run ruff check .
	$(UV) run ruff format --check .

stack-down:
	$(UV) run retrolytics stack down
