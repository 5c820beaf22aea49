# gfa: every target that compiles installs libtorch first (scripts/setup-libtorch.sh, cached).
SHELL := /bin/bash
CARGO ?= cargo
GFA := target/release/gfa
# The real-data tests run when a CIFAR-10 copy is found (absolute path: tests run in crate dirs).
DATA_GUESS := $(abspath $(firstword $(wildcard ../shared/data/cifar10-jpeg75/cifar-10-batches-bin data/cifar-10-batches-bin)))
ifneq ($(DATA_GUESS),)
export GFA_DATA_DIR ?= $(DATA_GUESS)
endif

.PHONY: setup build test quick methods reproduce bench fixtures lint clean

setup:
	@bash scripts/setup-libtorch.sh

build: setup
	$(CARGO) build --release

test: setup
	$(CARGO) test --workspace

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

# CPU-scale study: experiments/quick.toml -> results/quick/ (tables, figures, CSVs).
quick: build
	$(GFA) run experiments/quick.toml --results results
	$(GFA) report results/quick
	$(GFA) plot results/quick

# Every training method of the trainer, 10 epochs each (about 2 h on 2 cores):
# experiments/methods.toml -> results/methods/.
methods: build
	$(GFA) run experiments/methods.toml --results results
	$(GFA) report results/methods
	$(GFA) plot results/methods

# GPU-scale study of the paper (CUDA when present): experiments/paper.toml -> results/paper/.
reproduce: build
	$(GFA) run experiments/paper.toml --results results
	$(GFA) report results/paper
	$(GFA) plot results/paper

bench: build
	bash scripts/bench.sh

# Golden fixtures (needs PyTorch from PyPI; CI does not run this).
fixtures:
	bash scripts/make-fixtures.sh

clean:
	$(CARGO) clean
