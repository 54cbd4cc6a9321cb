# Two entry points for a fresh machine: `make demo` and `make test`. Each creates .venv and
# installs what it needs into it (torch 2.13.0 first: the CPU build on disk; anything else would
# pull a multi-GB CUDA build).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ALPACAEVAL ?= ../shared/data/alpacaeval
DEMO_DIR ?= demo-out
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test bench venv wordnet chromium clean

venv: $(STAMP) wordnet

# The post-hoc watermark's synonym lexicon is built from WordNet 3.0 as Debian ships it.
WORDNET_DATA := /usr/share/wordnet/data.noun
wordnet:
	@test -f $(WORDNET_DATA) || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends wordnet-base) >/dev/null; \
	  else \
	    echo "WordNet is missing: run 'sudo apt-get install wordnet-base' (the post-hoc" \
	         "watermark needs it; its tests are skipped without it)"; \
	  fi; }

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The report tests render HTML in a real headless browser: Chromium as Debian ships it.
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends chromium fonts-dejavu-core) >/dev/null; \
	  else \
	    echo "Chromium is missing: run 'sudo apt-get install chromium' (the report's browser" \
	         "test is skipped without it)"; \
	  fi; }

test: $(STAMP) wordnet chromium
	$(BIN)/python -m pytest -q

demo: $(STAMP) wordnet
	@ALPACAEVAL="$(ALPACAEVAL)" DEMO_DIR="$(DEMO_DIR)" BIN="$(BIN)" sh benchmarks/demo.sh

# The quick benchmarks (a few minutes); benchmarks/README.md has the full runs and their figures.
bench: $(STAMP) wordnet
	$(BIN)/pip install --quiet -e '.[bench,share]'
	$(BIN)/python benchmarks/minhash_speed.py --data "$(ALPACAEVAL)"
	$(BIN)/python benchmarks/embedding_speed.py --data "$(ALPACAEVAL)" -n 128 --prompts 40 --repeat 1
	$(BIN)/python benchmarks/scaling.py --data "$(ALPACAEVAL)" --sizes 10000,30000 \
		--out bench-out/scaling-quick
	$(BIN)/python benchmarks/watermark_fpr.py --data "$(ALPACAEVAL)" --keys 2
	$(BIN)/python benchmarks/radioactivity.py --data "$(ALPACAEVAL)" --quick \
		--out bench-out/radioactivity-quick
	$(BIN)/python benchmarks/sharing.py --data "$(ALPACAEVAL)" --quick

clean:
	rm -rf $(VENV) $(DEMO_DIR) *.egg-info .pytest_cache .hypothesis
