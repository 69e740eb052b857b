# Two commands on a fresh machine: `make demo` runs the main job, `make test` runs the tests.
# Both create .venv and install what is missing first (infra/setup_venv.sh; a no-op when current).
VENV ?= .venv
PY := $(VENV)/bin/python
# Outputs of `make demo` (sample data, feature cache, runs, MLflow store, exported model).
DEMO_DIR ?= demo-output
# The slowest tests close every run's log, so a test that grows shows up in CI before it hurts.
PYTEST_ARGS ?= --durations=15

.PHONY: setup demo test test-unit test-integration bench bench-selective clean

setup:
	@VENV=$(VENV) bash infra/setup_venv.sh

demo: setup
	$(PY) -m pipelines.demo --out $(DEMO_DIR)

# pytest exits 5 when it collects nothing: here that means the suite went missing (bad path or
# marker), which must fail loudly rather than pass.
test: setup
	@$(PY) -m pytest tests $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

test-unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

bench: setup bench-selective
	$(PY) -m benchmarks.decode_throughput
	$(PY) -m benchmarks.decode_memory
	$(PY) -m benchmarks.cache_throughput
	$(PY) -m benchmarks.cache_status
	$(PY) -m benchmarks.cache_memory
	$(PY) -m benchmarks.pipeline_startup
	$(PY) -m benchmarks.train_throughput
	$(PY) -m benchmarks.train_step
	$(PY) -m benchmarks.preemption_check
	$(PY) -m benchmarks.preemption_loss
	$(PY) -m benchmarks.export_checkpoint
	$(PY) -m benchmarks.serve_throughput
	$(PY) -m benchmarks.live_stream --demo $(DEMO_DIR)
	$(PY) -m benchmarks.retrieval
	$(PY) -m benchmarks.restore_memory
	$(PY) -m benchmarks.vqa_scoring

# Selective decoding (paper §4.5) needs a trained model with its Y-decoder: the demo's, the one it
# serves (results.json names it: the fine-tuned or the text-only decoder, whichever scored higher).
SERVED_DECODER = $(DEMO_DIR)/$$($(PY) -c "import json; print(json.load(open('$(DEMO_DIR)/results.json'))['served_decoder'])")
bench-selective: setup
	@grep -qs served_decoder $(DEMO_DIR)/results.json || $(PY) -m pipelines.demo --out $(DEMO_DIR)
	model=$(SERVED_DECODER) && \
	for smooth in 1 5; do $(PY) -m benchmarks.selective_decoding --model $$model --streams 12 \
		--smooth $$smooth --out bench-out/selective-smooth$$smooth || exit 1; done; \
	$(PY) -m benchmarks.selective_decoding --model $$model --streams 12 --smooth 5 \
		--durations loguniform --min-seconds 2 --max-seconds 16 --out bench-out/selective-loguniform

test-integration: setup
	$(PY) -m pytest tests/integration -m integration $(PYTEST_ARGS)

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
