# harstream — every target that needs the Python environment builds it first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
KAFKA_LIBS_STAMP := deploy/kafka/libs/.complete
PYTEST_ARGS ?=

SYSTEM_PACKAGES := prometheus chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system-deps demo demo-models test bench report-models lint kafka-jars kafka-up kafka-down clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,fast]'
	@touch $(STAMP)

# The end-to-end tests run a real Prometheus server and headless Chromium (Debian packages)
system-deps:
	@command -v prometheus >/dev/null && command -v chromium >/dev/null || { \
	  echo "installing $(SYSTEM_PACKAGES) (Debian packages) for the end-to-end tests"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install \
	    -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; }

kafka-jars: $(STAMP)
	$(PY) -m streams.local_kafka jars

demo: $(STAMP)
	$(VENV)/bin/harstream demo

test: $(STAMP) kafka-jars system-deps
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP) kafka-jars
	$(VENV)/bin/harstream bench codec
	$(VENV)/bin/harstream bench engine
	$(VENV)/bin/harstream bench e2e
	$(VENV)/bin/harstream bench swap
	$(VENV)/bin/harstream bench recovery

# Real trainings on ../shared/data (hours on 2 cores, each section kept as soon as measured): writes docs/models.md
# The model report: only sections that are missing or changed, plus SECTIONS=har,hapt,phones;
# JOBS=2 trains the HAPT labellers it needs two at a time (one thread each)
report-models: $(STAMP)
	$(PY) -m pipeline.reports.models_report $(if $(SECTIONS),--only $(SECTIONS)) $(if $(JOBS),--jobs $(JOBS))

# Retrain the demo's default models (pipeline/assets/) with the project's own training code
demo-models: $(STAMP)
	$(PY) -m pipeline.demo_models

lint: $(STAMP)
	$(VENV)/bin/ruff check harstream streams models pipeline tests
	$(VENV)/bin/ruff format --check harstream streams models pipeline tests

kafka-up: $(STAMP) kafka-jars
	$(PY) -m streams.local_kafka up

kafka-down: $(STAMP)
	$(PY) -m streams.local_kafka down

clean:
	-$(PY) -m streams.local_kafka down 2>/dev/null
	rm -rf $(VENV) deploy/kafka/libs .kafka build *.egg-info .pytest_cache .ruff_cache models-out evaluation
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
