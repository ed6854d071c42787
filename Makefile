# Taper: the project's commands. Everything builds in release: one set of
# optimised dependencies serves the demo, the tests and the benchmarks.
CARGO ?= cargo
RELEASE := --release

.PHONY: demo test lint fmt data bench clean-runs

## Build and run the quick demos on the embedded data (no download needed).
demo:
	$(CARGO) build $(RELEASE) --examples
	@for ex in $(DEMOS); do \
		echo "== $$ex"; \
		./target/release/examples/$$ex --out runs/demo-$$ex || exit 1; \
	done

DEMOS := mlp mnist_cnn image_transforms $(patsubst examples/%.rs,%,$(filter examples/linear_regression.rs examples/logistic_regression.rs,$(wildcard examples/*.rs)))

## The whole workspace's tests (unit, integration, end-to-end, doc).
test:
	$(CARGO) test $(RELEASE) --workspace --all-targets
	$(CARGO) test $(RELEASE) --workspace --doc

## Clippy with warnings as errors, and formatting.
lint:
	$(CARGO) clippy $(RELEASE) --workspace --all-targets -- -D warnings
	$(CARGO) fmt --all -- --check

fmt:
	$(CARGO) fmt --all

## Download the public data sets into ./data where the network allows.
data:
	bash tools/fetch_data.sh data

## Taper beside PyTorch, torchvision, scikit-learn and gensim (bench/run.sh; BENCH_ARGS=--quick skips the MNIST epoch).
bench:
	bash bench/run.sh $(BENCH_ARGS)

clean-runs:
	rm -rf runs
