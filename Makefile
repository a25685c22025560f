# The two commands: `make demo` and `make test`. Every target uses .venv/ at the repo root.
VENV    := .venv
PY      := $(VENV)/bin/python
CLI     := $(VENV)/bin/lammps-stream
RUNS      ?= 24
TEST_RUNS ?= 8
NP        ?= 2
SEED      ?= 2026
KEEP      ?=
PYTEST_ARGS ?=

.PHONY: install demo test unit integration lint format stack-up stack-down clean system-demo system-test

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	@command -v python3 >/dev/null || { echo "python3 not found: install Python 3.11+"; exit 2; }
	@bash .ci/system-deps.sh venv
	$(PY) -m pip --version >/dev/null 2>&1 || python3 -m venv --clear $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all]'
	@touch $@

system-demo:
	@bash .ci/system-deps.sh demo

system-test:
	@bash .ci/system-deps.sh test

demo: install system-demo
	$(CLI) demo --runs $(RUNS) --test-runs $(TEST_RUNS) --np $(NP) --seed $(SEED) \
		--out results/demo $(if $(filter 1 yes true,$(KEEP)),--keep,)

test: install system-test
	$(PY) -m pytest $(PYTEST_ARGS)

unit: install
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

integration: install system-test
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

stack-up: install
	$(CLI) stack up

stack-down: install
	$(CLI) stack down

clean:
	rm -rf $(VENV) results .pytest_cache .ruff_cache *.egg-info

# The campaign behind docs/models.md: 200 training and 50 test runs over the five decks
# (about 25 minutes on 2 cores), learned live by the service, then a report.
# With MAX_CORE_SECONDS=S it is a budget campaign instead (docs/active-learning.md): runs
# drawn by SAMPLER until the held-out MAPE reaches TARGET_MAPE or S core-seconds are spent.
CAMPAIGN_TRAIN ?= 200
CAMPAIGN_TEST  ?= 50
MAX_CORE_SECONDS ?=
TARGET_MAPE ?= 0.10
SAMPLER ?= suggest
# Scored from its own start: a demo before it on the same stack left predictions on the topic.
campaign: CAMPAIGN_SINCE := $(shell date -u +%FT%TZ)
.PHONY: campaign
campaign: install system-demo
	$(CLI) stack up
ifdef MAX_CORE_SECONDS
	-$(CLI) campaign --space docs/examples/campaign.yaml --sampler $(SAMPLER) --seed 1 \
		--target-mape $(TARGET_MAPE) --max-core-seconds $(MAX_CORE_SECONDS) \
		--test-runs $(CAMPAIGN_TEST)
else
	$(CLI) produce --space docs/examples/campaign.yaml --sampler lhs --count $(CAMPAIGN_TRAIN) --seed 1
	$(CLI) produce --space docs/examples/campaign.yaml --sampler lhs --count $(CAMPAIGN_TEST) \
		--seed 1001 --split test
endif
	$(CLI) evaluate --out results/campaign --since $(CAMPAIGN_SINCE)
	$(CLI) report --out results/campaign --since $(CAMPAIGN_SINCE)
