# Two commands for a newcomer: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast bench browser clean-venv

install: $(STAMP)

# Re-installs only when a requirements file or pyproject.toml changes; otherwise a no-op.
# The pinned set first (requirements-dev.txt = runtime + tests), then the project itself as an
# editable install without touching those pins (console scripts, `python -m` from any folder).
$(STAMP): requirements.txt requirements-dev.txt requirements-fan.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m pipeline.demo $(ARGS)

# The suite runs in WORKERS processes (pytest-xdist; CI has 2 cores). Tests sharing an expensive
# fixture stay on one worker (tests/conftest.py). WORKERS=0 or ARGS="-n 0 ...": one process (pdb, -s).
WORKERS ?= 2

test: $(STAMP)
	$(PY) -m pytest -n $(WORKERS) $(ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -n $(WORKERS) -m "not slow" $(ARGS)

bench: $(STAMP)
	$(PY) -m bench.run_all $(ARGS)

# Headless Chromium for the report's browser test (Debian package; needs root or sudo).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

clean-venv:
	rm -rf $(VENV)
