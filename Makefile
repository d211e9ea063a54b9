# Two entry points: `make demo` (set up, run the main job on the bundled default) and
# `make test` (set up, run the whole suite). Both are idempotent; the environment is .venv.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: setup demo test blender chromium

$(STAMP): requirements.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/dancegen generate -o out/demo

test: setup
	$(VENV)/bin/python -m pytest -q

# Debian's Blender, for the test that imports our BVH files into it (skipped without it).
blender:
	command -v blender >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends blender >/dev/null)

# Debian's Chromium, for the tests that load the HTML viewer headless (skipped without it).
chromium:
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null)
