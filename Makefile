# Two entry points: `make demo` (set up, run the main job on the bundled default) and
# `make test` (set up, run the whole suite). Both are idempotent; the environment is .venv.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: setup demo test blender chromium gltf-tools

$(STAMP): requirements.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
	$(VENV)/bin/python -c "from dancegen.audio.cache import warm_up; warm_up()"  # librosa's numba cache, once
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/dancegen generate -o out/demo

test: setup
	$(VENV)/bin/python -m pytest -q

# Debian's Blender, for the tests that import our BVH and GLB files into it (skipped without it);
# its glTF importer needs numpy, which Debian's blender package does not pull in.
blender:
	command -v blender >/dev/null && dpkg -s python3-numpy >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends blender python3-numpy >/dev/null)

# For the GLB tests (skipped without them): the Khronos glTF validator and three.js, from npm into
# .cache/node, run by Debian's node.
gltf-tools:
	command -v npm >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null)
	test -d .cache/node/node_modules/three -a -d .cache/node/node_modules/gltf-validator || npm install --silent --no-audit --no-fund --prefix .cache/node gltf-validator@2.0.0-dev.3.10 three@0.170.0

# Debian's Chromium, for the tests that load the HTML viewer headless (skipped without it).
chromium:
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null)
