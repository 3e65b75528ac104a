# Shortcuts for the README's quick-start commands, with the same venv folders: `.venv` for the
# demo, `.venv-test` (with the test extras) for the tests. `make install demo` and
# `make install-test test` run exactly the README's two commands; `make ci` runs .ci/run.
# Other venvs: make demo VENV=/path/to/venv, make test TEST_VENV=/path/to/venv
VENV ?= .venv
TEST_VENV ?= .venv-test

.PHONY: install demo install-test test ci

install:
	python3 -m venv $(VENV) && $(VENV)/bin/pip install -e .

demo:
	$(VENV)/bin/mtl_ssl_demo

install-test:
	python3 -m venv $(TEST_VENV) && $(TEST_VENV)/bin/pip install -e '.[test]'

test:
	$(TEST_VENV)/bin/pytest -q tests

ci:
	.ci/run
