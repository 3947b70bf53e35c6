# nasloop: `make cycle` runs the loop, `make test` the test suite. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
NASLOOP := $(VENV)/bin/nasloop
# The torch the host venv gets (tests, tiny LLM, benchmark baseline). The images pin their own.
TORCH_SPEC ?= torch==2.13.0
# Base of the Docker images [default: python:3.11-slim-bookworm when the daemon has or can pull it,
# else the local Debian image images/base/build.sh makes as root (CI, no registry)]; on a GPU
# workstation e.g. a CUDA PyTorch image, with IMAGE_BUILD_ARGS as in the README. IMAGE_BUILD_ARGS is
# one shell-quoted string, passed intact (exported, not split by make).
BASE_IMAGE ?=
IMAGE_BUILD_ARGS ?=
# The LLM image's sampling backends: empty (transformers) or vllm (adds vLLM; GPU only, see the README).
# Passed to the wheelhouse and the build as the build argument LLM_BACKEND.
LLM_BACKEND ?=
ifneq ($(strip $(LLM_BACKEND)),)
override IMAGE_BUILD_ARGS += LLM_BACKEND=$(LLM_BACKEND)
endif
export IMAGE_BUILD_ARGS
# The workspace [default: runs; runs-mini for PROFILE=mini, whose corpus holds the grammar's programs
# and whose tiny model learns from them: neither may reach the smoke profile's].
WORKDIR ?=
PROFILE ?=
CYCLES ?= 1
PYTEST_ARGS ?=
CYCLE_ARGS ?=

.PHONY: help setup wheelhouse base-image images test test-fast bench gpu-check cycle check-docker clean

help:
	@echo "make setup      create $(VENV) and install nasloop (idempotent)"
	@echo "make images     build the Docker images (needs a Docker daemon; LLM_BACKEND=vllm adds vLLM)"
	@echo "make test       run the whole test suite (needs Docker and the images)"
	@echo "make test-fast  run the tests that need no Docker"
	@echo "make bench      run the benchmarks"
	@echo "make gpu-check  run the prepared GPU check (bench/gpu_check.py; no Docker needed)"
	@echo "make cycle      run the loop until CYCLES=N cycles are done (PROFILE=paper|smoke|mini)"

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python >= 3.11 is needed)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e '.[dev,llm,bench,ray]'
	@touch $@

setup: $(VENV)/.installed

check-docker:
	@command -v docker >/dev/null || { echo "error: the docker command is missing: install Docker (Debian: apt-get install docker.io)"; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "error: no Docker daemon is reachable: start it (e.g. 'dockerd &' or 'systemctl start docker') and check your permissions"; exit 1; }

# The base image: chosen (and pulled, or built with debootstrap as root) by `nasloop images base`,
# recorded in build/base-image. Only that fallback ever needs root.
base-image: setup check-docker
	@$(NASLOOP) images base $(if $(BASE_IMAGE),--base-image "$(BASE_IMAGE)")

# Wheels for the images, downloaded on the host for the base image's Python and platform (the images
# build without network access); a no-op when nothing changed.
wheelhouse: base-image
	$(NASLOOP) images wheelhouse

images: wheelhouse
	$(NASLOOP) images build

test: setup images
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not docker" $(PYTEST_ARGS)

bench: setup images
	@mkdir -p bench-results
	@set -e; for script in bench/bench_*.py; do echo "== $$script"; $(PY) $$script; done

# The prepared GPU check (bench/gpu_check.py): no Docker, no network, no nasloop install needed;
# writes bench-results/gpu-check.json. E.g. GPU_CHECK_ARGS="--device cpu" on a machine without a GPU.
GPU_CHECK_ARGS ?=
gpu-check:
	PYTHONPATH=. $(PYTHON) bench/gpu_check.py $(GPU_CHECK_ARGS)

# The seed corpus: a LEMUR JSONL(.gz) export or an nn-dataset checkout directory.
LEMUR ?= ../shared/data/lemur/lemur-img-classification.jsonl.gz

# The loop until the experiment has CYCLES completed cycles (a crashed run resumes; a finished one does
# nothing), with everything it needs prepared first: the paper profile
# where Docker can reach an NVIDIA GPU, else the smoke profile (tiny local model, CPU, synthetic data), whose
# tiny model learns from the corpus programs that pass the sandbox's validity checks. PROFILE=mini is the
# CPU miniature: the grammar's programs join the corpus first (`corpus synth`, checked), and its tiny
# model learns from them and the valid LEMUR programs; Fashion-MNIST from Debian's package.
cycle: images
	@set -e; profile="$(PROFILE)"; workdir="$(WORKDIR)"; \
	if [ -z "$$profile" ]; then \
	  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 \
	     && docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q nvidia; then \
	    profile=paper; echo "NVIDIA GPU visible to Docker: running the paper profile"; \
	  else \
	    profile=smoke; echo "no NVIDIA GPU visible to Docker: running the smoke profile (tiny local model, CPU, synthetic data)"; \
	  fi; \
	fi; \
	if [ -z "$$workdir" ]; then workdir=runs; [ "$$profile" = mini ] && workdir=runs-mini; fi; \
	if ! $(NASLOOP) corpus stats --workdir "$$workdir" --json | grep -q '"corpus_programs": [1-9]'; then \
	  [ -e "$(LEMUR)" ] || { echo "error: no seed corpus: set LEMUR=PATH to a LEMUR JSONL export or an nn-dataset checkout"; exit 1; }; \
	  $(NASLOOP) corpus import --workdir "$$workdir" --lemur "$(LEMUR)"; \
	fi; \
	if [ "$$profile" = mini ]; then \
	  $(NASLOOP) corpus synth --workdir "$$workdir" --profile mini; \
	fi; \
	if [ "$$profile" = smoke ] || [ "$$profile" = mini ]; then \
	  $(NASLOOP) corpus check --workdir "$$workdir" --profile "$$profile"; \
	  if [ ! -f "$$workdir/models/tiny/config.json" ]; then \
	    $(NASLOOP) corpus export --format chat-jsonl --valid-only --workdir "$$workdir" --profile "$$profile" \
	      "$$workdir/models/tiny-corpus.jsonl"; \
	    $(NASLOOP) llm tiny-model "$$workdir/models/tiny" --profile "$$profile" --workdir "$$workdir" \
	      --corpus "$$workdir/models/tiny-corpus.jsonl"; \
	  fi; \
	fi; \
	if [ "$$profile" = paper ] && [ ! -f "$$workdir/data/cifar10/meta.json" ]; then \
	  $(NASLOOP) data fetch cifar10 --workdir "$$workdir"; \
	fi; \
	$(NASLOOP) cycle --profile "$$profile" --until $(CYCLES) --workdir "$$workdir" $(CYCLE_ARGS)

clean:
	rm -rf build bench-results
