# The two commands of the README are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test check bench system-packages clean cometbft abci-cli proto

# The validator network's engine (docs/validators.md), built from source into .bin/ where Go is present.
COMETBFT_VERSION := v0.38.25
GO               ?= $(shell command -v go 2>/dev/null || ls /usr/local/go/bin/go 2>/dev/null)
COMETBFT_STAMP   := .bin/.cometbft-$(COMETBFT_VERSION)

setup: $(STAMP) cometbft

cometbft: $(COMETBFT_STAMP)

$(COMETBFT_STAMP):
	@if [ -z "$(GO)" ]; then \
	  echo "make cometbft: Go (>= 1.22) is missing, so the CometBFT $(COMETBFT_VERSION) engine is not built;" >&2; \
	  echo "  pykoii validator / devnet --validators and their tests need it: install Go (apt-get install golang-go," >&2; \
	  echo "  or go.dev/dl), then run make cometbft; everything else works without it" >&2; \
	else \
	  echo "building CometBFT $(COMETBFT_VERSION) into .bin/ (about 45 s the first time, cached after)"; \
	  mkdir -p .bin && GOBIN=$(CURDIR)/.bin $(GO) install github.com/cometbft/cometbft/cmd/cometbft@$(COMETBFT_VERSION) \
	    && touch $@; \
	fi

# The engine's kvstore as an out-of-process socket application: the fair ceiling of
# benchmarks/bench_validators.py (built by `make bench` or by the benchmark itself, not by setup/test).
ABCI_CLI_STAMP := .bin/.abci-cli-$(COMETBFT_VERSION)

abci-cli: $(ABCI_CLI_STAMP)

$(ABCI_CLI_STAMP):
	@test -n "$(GO)" || { echo "make abci-cli: Go (>= 1.22) is missing" >&2; exit 1; }
	mkdir -p .bin && GOBIN=$(CURDIR)/.bin $(GO) install github.com/cometbft/cometbft/abci/cmd/abci-cli@$(COMETBFT_VERSION) \
	  && touch $@

# Regenerates src/pykoii/chain/abci_pb2.py from abci.proto (committed; needs only a throwaway protoc).
proto:
	$(PYTHON) -m venv build/protoc && build/protoc/bin/pip install --quiet grpcio-tools==1.85.1
	build/protoc/bin/python -m grpc_tools.protoc -Isrc/pykoii/chain --python_out=src/pykoii/chain \
	  src/pykoii/chain/abci.proto

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/pykoii demo

# System packages the suite needs where missing (apt-get, as root).
system-packages:
	@bash scripts/system-packages

test: setup system-packages
	$(BIN)/python -m pytest -q

check: setup
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

bench: setup abci-cli
	$(BIN)/python -m pytest -q -m slow
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .bin build *.egg-info src/*.egg-info .pytest_cache .hypothesis
