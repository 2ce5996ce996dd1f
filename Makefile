# The two commands: `make run` (the main job on embedded defaults) and `make test` (every test).
PY := .venv/bin/python

.PHONY: run test bootstrap bench

bootstrap:
	@bash infra/bootstrap.sh

run: bootstrap
	$(PY) -m infra.local.platform

# mypy first (its config is in pyproject.toml): a type error fails the run before any test.
# pytest exits 5 when it collects no tests; that is a failure here like any other non-zero.
test: bootstrap
	$(PY) -m mypy
	$(PY) -m pytest tests --durations=15

# Not part of the two commands: engine throughput vs the emulator's ceiling and two npm peers,
# then the fan-out over Cloud Tasks to two worker processes vs the CLI on the same data.
DOCS ?= 100000
bench: bootstrap
	$(PY) bench/engine.py --docs $(DOCS)
	$(PY) bench/fanout.py --docs $(DOCS)
