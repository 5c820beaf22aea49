# gfa: every target that compiles installs libtorch first (scripts/setup-libtorch.sh, cached).
SHELL := /bin/bash
CARGO ?= cargo
GFA := target/release/gfa
# The real-data tests run when a CIFAR-10 copy is found (absolute path: tests run in crate dirs).
DATA_GUESS := $(abspath $(firstword $(wildcard ../shared/data/cifar10-jpeg75/cifar-10-batches-bin data/cifar-10-batches-bin)))
ifneq ($(DATA_GUESS),)
export GFA_DATA_DIR ?= $(DATA_GUESS)
endif

.PHONY: setup build test test-float quick methods knife-edge attack-failure frontier frontier-long reproduce bench fd-vs-exact gpu-check slurm-check fixtures lint clean

setup:
	@bash scripts/setup-libtorch.sh

build: setup
	$(CARGO) build --release

test: setup
	$(CARGO) test --workspace

# The tests that compare floats (golden fixtures, bit-for-bit training, resume), once under
# each of libtorch's CPU code paths (default, avx2, avx512) that this CPU has; it names the
# paths it skipped. See scripts/test-float.sh and CONTRIBUTING.md ("Tests that compare floats").
test-float: setup
	CARGO="$(CARGO)" bash scripts/test-float.sh

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

# CPU-scale study: experiments/quick.toml -> results/quick/ (tables, figures, CSVs).
quick: build
	$(GFA) run experiments/quick.toml --results results
	$(GFA) report results/quick
	$(GFA) plot results/quick

# Every training method of the trainer, 10 epochs each (about 3 h on 2 cores, the sum of the
# runs' median epoch times in results/methods/README.md):
# experiments/methods.toml -> results/methods/.
methods: build
	$(GFA) run experiments/methods.toml --results results
	$(GFA) report results/methods
	$(GFA) plot results/methods

# GFA's knife edge over λ: experiments/knife_edge.toml -> results/knife_edge/ (48 runs, then
# AutoAttack for the runs whose worst case beats standard training's by 5 points; resumable).
knife-edge: build
	$(GFA) run experiments/knife_edge.toml --results results
	$(GFA) escalate experiments/knife_edge.toml --results results
	$(GFA) report results/knife_edge
	$(GFA) plot results/knife_edge

# Could the attacks have failed on the knife edge's best GFA models? Five models of its recipe
# (three GFA-first, standard, PGD-AT) under AutoAttack's attacks, with the Indicators of Attack
# Failure and the binarization test: experiments/attack_failure.toml -> results/attack_failure/.
attack-failure: build
	$(GFA) run experiments/attack_failure.toml --results results
	$(GFA) report results/attack_failure
	$(GFA) plot results/attack_failure

# The knife edge's frontier: GFA-first's winners against controls at matched clean accuracy
# (early stopping, weight decay, GNR, PGD-AT), three seeds each: experiments/frontier.toml ->
# results/frontier/ (45 runs, then AutoAttack for the runs whose worst case beats standard
# training's by 2 points; `gfa run` took 28 min on 2 cores, results/frontier/README.md).
frontier: build
	$(GFA) run experiments/frontier.toml --results results
	$(GFA) escalate experiments/frontier.toml --results results
	$(GFA) report results/frontier
	$(GFA) plot results/frontier

# Its longer questions: 15 epochs on 50,000 images and GFA fine-tuned from the converged standard
# model (`[train] init`), three seeds each: experiments/frontier_long.toml ->
# results/frontier_long/ (33 runs; `gfa run` took 1:50 with two workers on 2 cores, then the
# escalation, results/frontier_long/README.md): resumable, stop and start it again as often as needed.
frontier-long: build
	$(GFA) run experiments/frontier_long.toml --results results
	$(GFA) escalate experiments/frontier_long.toml --results results
	$(GFA) report results/frontier_long
	$(GFA) plot results/frontier_long

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
# on a machine without a GPU it says what it skipped. See scripts/gpu-check.sh. On a GPU machine
# without Rust: `make gpu-check GFA_BIN=./gfa` (a gfa built elsewhere) skips the build.
GFA_BIN ?=
gpu-check: $(if $(GFA_BIN),,build)
	GFA="$(or $(GFA_BIN),$(GFA))" bash scripts/gpu-check.sh

# gfa on a real one-node Slurm cluster started on this machine (installs slurm-wlm and munge
# with apt-get when absent; needs root): the emitted script submitted from another folder, a
# task cancelled and resubmitted, every CSV against a local run. See scripts/slurm-check.sh.
slurm-check: setup
	bash scripts/slurm-check.sh

# Golden fixtures, regenerated by their scripts (each script's header says what it writes and
# needs): PyTorch 2.11.0, torchattacks 3.5.1, numpy and safetensors from PyPI in $(PYTHON), and a
# checkout of fra31/auto-attack at commit a392200 in AUTOATTACK_DIR. The reference outputs the
# tests compare are float64; the models' float32 weights (trained, or BatchNorm statistics from
# float32 passes) depend in their last bits on the CPU that makes them, so a full run on another
# CPU rewrites them too. `gen_attack_fixtures.py --exact-only`, `gen_model_fixtures.py --io-only`
# and `gen_import_fixtures.py --io-only` recompute only the float64 outputs from the committed
# models and points. CI does not run this.
PYTHON ?= python3
fixtures:
	@test -n "$(AUTOATTACK_DIR)" || { echo "make fixtures: set AUTOATTACK_DIR to a checkout of fra31/auto-attack (commit a392200)" >&2; exit 2; }
	$(PYTHON) crates/gfa-attacks/tests/fixtures/gen_attack_fixtures.py --autoattack $(AUTOATTACK_DIR)
	$(PYTHON) crates/gfa-attacks/tests/fixtures/gen_minnorm_fixtures.py
	$(PYTHON) crates/gfa-core/tests/fixtures/gen_gfa_fixtures.py
	$(PYTHON) crates/gfa-core/tests/fixtures/gen_method_fixtures.py
	$(PYTHON) scripts/gen_model_fixtures.py
	$(PYTHON) scripts/gen_import_fixtures.py
	$(PYTHON) scripts/gen_import_bad_fixtures.py
	$(PYTHON) scripts/gen_torchscript_fixtures.py

clean:
	$(CARGO) clean
