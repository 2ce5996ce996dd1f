# The two commands: `make run` (the main job on embedded defaults) and `make test` (every test).
PY := .venv/bin/python

.PHONY: run test bootstrap

bootstrap:
	@bash infra/bootstrap.sh

run: bootstrap
	$(PY) -m infra.local.demo

# pytest exits 5 when it collects no tests; that is a failure here like any other non-zero.
test: bootstrap
	$(PY) -m pytest tests
