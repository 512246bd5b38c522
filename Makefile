# Set-up and checks. `make demo` and `make test` create whatever is missing first.
PYTHON ?= python3.11
VENV := .venv
QVENV := .venv-quant
STAMP := $(VENV)/.installed
QSTAMP := $(QVENV)/.installed
DEMO_OUT ?= demo-out
PIP_FLAGS ?= --quiet --disable-pip-version-check

.PHONY: demo test lint typecheck unit venv venv-quant clean debian-packages

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

# The main job on embedded defaults. File targets: a re-run reuses what is already there.
demo: $(STAMP) $(QSTAMP) $(DEMO_OUT)/reference.osim $(DEMO_OUT)/subject-123.osim
	$(VENV)/bin/cervical model info $(DEMO_OUT)/subject-123.osim
	$(VENV)/bin/cervical simulate --population $(DEMO_OUT)/population.parquet --subjects 20 \
		--motions default --out $(DEMO_OUT)/data
	$(MAKE) --no-print-directory $(DEMO_OUT)/bundle
	$(VENV)/bin/cervical bundle verify $(DEMO_OUT)/bundle --pubkey $(DEMO_OUT)/signing.pub
	$(VENV)/bin/cervical envelope --population $(DEMO_OUT)/population.parquet --subject 123 \
		--out $(DEMO_OUT)/envelope-123.json --plot $(DEMO_OUT)/envelope-123.png
	$(VENV)/bin/cervical bench assessment --envelope $(DEMO_OUT)/bundle --subjects 100
	$(VENV)/bin/cervical edge simulate --sim seed=3,restrict=right_rotation+left_bend \
		--out-dir $(DEMO_OUT)/hub-recordings
	$(VENV)/bin/cervical edge replay --head $(DEMO_OUT)/hub-recordings/head.csv \
		--trunk $(DEMO_OUT)/hub-recordings/trunk.csv --bundle $(DEMO_OUT)/bundle \
		--profile deploy/profile.example.toml --db $(DEMO_OUT)/hub.db --pubkey $(DEMO_OUT)/signing.pub
	$(VENV)/bin/cervical bench edge --bundle $(DEMO_OUT)/bundle --pubkey $(DEMO_OUT)/signing.pub \
		--seconds 120 --repeats 1
	scripts/ble_demo.sh $(DEMO_OUT) $(VENV)

# A short training run on the demo dataset (2 minutes), its signed int8 bundle and the hub checks.
$(DEMO_OUT)/run: | $(STAMP)
	$(VENV)/bin/cervical train --data $(DEMO_OUT)/data --out $@ --time-budget-s 120

$(DEMO_OUT)/signing.key: | $(STAMP)
	$(VENV)/bin/cervical keys generate --out $@

# The demo's envelope grid is coarse (8 nodes, 30° directions, ~10 s); a release bundle uses the
# full grid (`cervical envelope-grid --out envelope_grid.json`, 54 nodes, ~5 min on 2 cores).
$(DEMO_OUT)/envelope_grid.json: | $(STAMP)
	$(VENV)/bin/cervical envelope-grid --coarse --out $@

$(DEMO_OUT)/bundle: $(DEMO_OUT)/run $(DEMO_OUT)/signing.key $(DEMO_OUT)/envelope_grid.json | $(QSTAMP)
	$(VENV)/bin/cervical quantize --run $(DEMO_OUT)/run --out $@ --key $(DEMO_OUT)/signing.key \
		--envelope $(DEMO_OUT)/envelope_grid.json

$(DEMO_OUT)/population.parquet: | $(STAMP)
	$(VENV)/bin/cervical population sample --n 1000000 --seed 7 --out $@

$(DEMO_OUT)/reference.osim: | $(STAMP)
	$(VENV)/bin/cervical model build --reference --out $@

$(DEMO_OUT)/subject-123.osim: $(DEMO_OUT)/population.parquet
	$(VENV)/bin/cervical model build --population $< --subject 123 --out $@

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP) $(QSTAMP) debian-packages
	$(VENV)/bin/pytest

test: lint typecheck unit

clean:
	rm -rf $(VENV) $(QVENV) $(DEMO_OUT) .pytest_cache .mypy_cache .ruff_cache
