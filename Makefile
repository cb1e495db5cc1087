# Two commands (see README):  make lab   |   make test
PYTHON ?= python3
VENV   ?= .venv
# No GPU? `make lab TORCH_INDEX=https://download.pytorch.org/whl/cpu` installs PyTorch's CPU-only build.
TORCH_INDEX ?=
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: lab test setup sandbox browser build check grade clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -c requirements/constraints.txt \
	  $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) -e ".[test]"
	@touch $@

# bubblewrap gives the grader its sandbox (mount, PID and network namespaces). Optional: without it
# the grader runs in a reduced mode and says which guarantees it drops.
sandbox:
	@command -v bwrap >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get install -y -qq bubblewrap >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq bubblewrap >/dev/null 2>&1)) \
	  || echo "note: bubblewrap not installed; the grader will run without its sandbox (see docs/grading.md)"; }

# Headless Chromium and its driver run the browser tests (tests/test_cards.py, tests/test_lab_browser.py).
# Optional: without them those tests skip and say why.
browser:
	@{ command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1)) \
	  || echo "note: chromium and chromium-driver not installed; the browser tests will be skipped"; }

lab: setup
	$(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/notebooks \
	  $$([ "$$(id -u)" = 0 ] && echo --allow-root)

test: setup sandbox browser
	$(BIN)/python -m pytest -q -n auto --dist loadgroup

build: setup
	$(BIN)/attnlab build

check: setup
	$(BIN)/attnlab check

clean-venv:
	rm -rf $(VENV)
