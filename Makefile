# Set-up and checks. `make demo` and `make test` create whatever is missing first.
PYTHON ?= python3.11
VENV := .venv
QVENV := .venv-quant
STAMP := $(VENV)/.installed
QSTAMP := $(QVENV)/.installed
DEMO_OUT ?= demo-out
PIP_FLAGS ?= --quiet --disable-pip-version-check

.PHONY: demo demo-stop test lint typecheck unit venv venv-quant clean debian-packages

venv: $(STAMP)
venv-quant: $(QSTAMP)

# torch first, pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) torch==2.13.0
	$(VENV)/bin/pip install $(PIP_FLAGS) -e '.[host,edge,gateway,web,dev]'
	touch $@

# Debian packages: Chromium for the clinician view's browser test (Playwright drives it; nothing
# is downloaded at test time) and the Pango libraries WeasyPrint renders PDF reports with.
# Installed only when one is missing; sudo only when not root.
DEBIAN_PACKAGES := chromium libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
debian-packages:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# The conversion toolchain pins numpy 1.26 (onnx2tf 1.29.24 and its exact pins), which OpenSim
# cannot share: it lives in its own venv and the host calls it as a subprocess.
$(QSTAMP): pyproject.toml
	$(PYTHON) -m venv $(QVENV)
	$(QVENV)/bin/pip install $(PIP_FLAGS) torch==2.13.0
	$(QVENV)/bin/pip install $(PIP_FLAGS) -e '.[quant]'
	touch $@

# The main job on embedded defaults (cervical_demo): population, dataset, training, signed int8
# bundle, a virtual hub measuring a patient, BLE sync, the clinician web view and its exports.
# A re-run reuses the finished stages in $(DEMO_OUT); the web view keeps running until
# `make demo-stop`. DEMO_ARGS=--tiny for a quick look, --full for the README's scale.
demo: $(STAMP) $(QSTAMP) debian-packages
	$(VENV)/bin/cervical demo --out $(DEMO_OUT) $(DEMO_ARGS)

demo-stop:
	@if [ -x $(VENV)/bin/cervical ]; then $(VENV)/bin/cervical demo stop --out $(DEMO_OUT); fi

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP) $(QSTAMP) debian-packages
	$(VENV)/bin/pytest

test: lint typecheck unit

clean: demo-stop
	rm -rf $(VENV) $(QVENV) $(DEMO_OUT) .pytest_cache .mypy_cache .ruff_cache
