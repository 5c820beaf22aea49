# gfa: every target that compiles installs libtorch first (scripts/setup-libtorch.sh, cached).
SHELL := /bin/bash
CARGO ?= cargo
GFA := target/release/gfa
# The real-data tests run when a CIFAR-10 copy is found (absolute path: tests run in crate dirs).
DATA_GUESS := $(abspath $(firstword $(wildcard ../shared/data/cifar10-jpeg75/cifar-10-batches-bin data/cifar-10-batches-bin)))
ifneq ($(DATA_GUESS),)
export GFA_DATA_DIR ?= $(DATA_GUESS)
endif

.PHONY: setup build test test-float quick methods reproduce bench fd-vs-exact gpu-check fixtures lint clean

setup:
	@bash scripts/setup-libtorch.sh

build: setup
	$(CARGO) build --release

test: setup
	$(CARGO) test --workspace

# The tests that compare floats (golden fixtures, bit-for-bit training, resume), to run again
# under another of libtorch's CPU code paths: ATEN_CPU_CAPABILITY=default make test-float.
# One workspace command (the build `make test` made serves it; `-p` would rebuild the
# dependencies with other features), its name filters applied to every test binary.
test-float: setup
	$(CARGO) test --workspace --lib --tests -- \
	  libtorch matches_torchattacks pytorch bit_for_bit resumed finite_difference run_killed

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

# GPU-scale study of the paper: experiments/paper.toml -> results/paper/. `gfa plan` first
# prints the grid's estimated hours on the device it would use, and refuses a CPU (weeks of
# work): DEVICE=cpu make reproduce runs it there anyway; DEVICE=cuda:1 picks another GPU.
DEVICE ?=
reproduce: build
	$(GFA) --device $(or $(DEVICE),auto) plan experiments/paper.toml --results results $(if $(DEVICE),,--require-cuda)
	$(GFA) --device $(or $(DEVICE),auto) run experiments/paper.toml --results results
	$(GFA) report results/paper
	$(GFA) plot results/paper

bench: build
	bash scripts/bench.sh

# The finite-difference GFA gradient against the exact one on quick.toml's recipe: its two GFA
# runs trained both ways (4 runs, attacks cut to FGSM) -> results/fd_vs_exact/ and
# results/bench/fd_vs_exact.md. See scripts/fd_vs_exact.sh.
fd-vs-exact: build
	bash scripts/fd_vs_exact.sh

# CUDA against the CPU and against PyTorch on this machine's GPU -> results/bench/gpu.{md,jsonl};
# on a machine without a GPU it says what it skipped. See scripts/gpu-check.sh.
gpu-check: build
	bash scripts/gpu-check.sh

# Golden fixtures (needs PyTorch from PyPI; CI does not run this).
fixtures:
	bash scripts/make-fixtures.sh

clean:
	$(CARGO) clean
