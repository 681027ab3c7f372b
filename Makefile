# The two commands of the README. Each one first makes sure the environment exists
# (scripts/setup_env.sh is idempotent: a second run reuses .venv).
VENV ?= .venv
ACT = . $(VENV)/bin/activate &&

.PHONY: setup demo test bench clean-env

setup:
	bash scripts/setup_env.sh

demo: setup
	$(ACT) genpose demo

test: setup
	$(ACT) python -m pytest -q test

bench: setup
	$(ACT) genpose bench --data data/synth/test --json docs/bench.json --threads 1

clean-env:
	rm -rf $(VENV)
