# Two entry points (see README): `make demo` runs the main job, `make test` runs every check.
# Both bootstrap .venv, install the dependencies once (re-done only when pyproject.toml changes) and
# rebuild the Rust extension in release mode only when Rust sources change.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DEPS   := $(VENV)/.erasus-deps
EXT    := $(VENV)/.erasus-ext
EXTRAS ?= dev,llm,dp,gpu,select,distributed,deepspeed,diffusion,docs,audio
# slow = real-model tests (minutes on a CPU); `make test PYTEST_ARGS=` runs them too
PYTEST_ARGS ?= -m "not slow"
RUST_SRC := $(shell find rust -name '*.rs' 2>/dev/null) Cargo.toml Cargo.lock rust/erasus-core/Cargo.toml rust/erasus-py/Cargo.toml

export TRITON_INTERPRET ?= 1

.PHONY: demo docs test test-rust test-python test-docs stubtest lint bench wheel clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(DEPS): pyproject.toml | $(PY)
	$(PY) .ci/deps.py $(EXTRAS) > $(VENV)/requirements.txt
	$(PY) -m pip install -q -r $(VENV)/requirements.txt
	touch $@

$(EXT): $(DEPS) $(RUST_SRC)
	$(VENV)/bin/maturin develop --release -q
	touch $@

demo: $(EXT)
	$(VENV)/bin/erasus demo

test: test-rust $(EXT) stubtest test-python test-docs

test-rust:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo test --workspace --locked -q

stubtest: $(EXT)
	$(PY) -m mypy.stubtest erasus._core

test-python: $(EXT)
	$(PY) -m pytest -q $(PYTEST_ARGS) tests; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

# the documentation site must build without a warning, and every example must run offline with --tiny
test-docs: $(EXT)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet
	$(PY) examples/run_all.py

docs: $(EXT)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve

bench: $(EXT)
	cargo bench -p erasus-core
	$(PY) -m pytest benches/python --benchmark-only

wheel: $(DEPS)
	$(VENV)/bin/maturin build --release --out dist

clean:
	rm -rf $(VENV) target dist
