# trivas — two commands on a fresh machine (Debian, Python 3.11, Java 17, root):
#   make demo   set everything up and run the playground (Ctrl-C stops it)
#   make test   set everything up and run the test suite
# Everything they need is installed by the targets below: the virtualenv with the pinned
# packages, the JVM jars (resolved once into .cache/jars), and Debian packages when missing.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JARS   := .cache/jars/.resolved
PYTEST_ARGS ?=

.PHONY: demo test bench clean setup java system-packages jars lint

demo: setup
	$(BIN)/trivas demo

test: setup
	$(BIN)/pytest $(PYTEST_ARGS)

bench: setup
	$(BIN)/python bench/bench_pipeline.py
	$(BIN)/python bench/bench_backfill.py
	$(BIN)/python bench/bench_quality.py
	$(BIN)/python bench/bench_contracts.py
	$(BIN)/python bench/bench_collector.py
	$(BIN)/python bench/bench_models.py
	$(BIN)/python bench/bench_snapshots.py
	$(BIN)/python bench/bench_alerts.py
	$(BIN)/python bench/bench_app.py
	$(BIN)/python bench/bench_actions.py

lint: setup
	$(BIN)/ruff check lakehouse spark_jobs models app tests bench

setup: java system-packages $(STAMP) $(JARS)

java:
	@command -v java >/dev/null 2>&1 || { echo "error: Java not found: install a Java 17 runtime (Debian: apt-get install openjdk-17-jre-headless)" >&2; exit 1; }

system-packages:
	@bash scripts/install_debian_packages.sh
	@bash scripts/install_browser.sh

$(STAMP): setup.cfg pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found: install Python 3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet -c constraints.txt -e '.[spark,dev]'
	touch $@

# The JVM jars (Delta, Spark's Kafka connector, the Kafka broker, Kafka Connect + Debezium),
# resolved once with Ivy into .cache/jars and used offline from there.
$(JARS): $(STAMP) lakehouse/runtime/jars.py
	$(BIN)/python -m lakehouse.runtime.jars
	@mkdir -p $(dir $@) && touch $@

clean:
	-$(BIN)/trivas kafka down 2>/dev/null
	-$(BIN)/trivas cluster down 2>/dev/null
	rm -rf var bench/results/*.tmp .pytest_cache
