# Shortcuts for the README's quick-start commands. `make install` makes the venv (.venv, as in the
# README); `make demo` and `make test` run exactly the second halves of the README's two commands.
# Another venv: make demo VENV=/path/to/venv
VENV ?= .venv

.PHONY: install demo test

install:
	python3 -m venv $(VENV) && $(VENV)/bin/pip install -e '.[test]'

demo:
	$(VENV)/bin/mtl_ssl_demo

test:
	$(VENV)/bin/pytest -q tests
