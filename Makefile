# The two entry points from the README. Both run the idempotent setup first.
PY := .venv/bin/python
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: setup demo cluster-demo test test-fast lint typecheck ctest pytest clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m tinyfleet.cli demo

# Issue 16: 3 RabbitMQ nodes, PostgreSQL, 2 replicas, 500 devices; a broker node and the leader killed
# mid-rollout (docs/DEPLOY.md "Broker cluster"). DEVICES=N for another fleet size.
DEVICES ?= 500
cluster-demo: setup
	$(PY) scripts/cluster_demo.py --devices $(DEVICES)

test: setup lint typecheck ctest pytest

# The edit-run loop: every test not marked slow (no end-to-end runs, user journeys or QEMU) on SQLite
# only (`make test` also runs the PostgreSQL variants), no lint,
# on FAST_JOBS pytest-xdist workers; one test file stays on one worker (module fixtures build once).
FAST_JOBS ?= 2
test-fast: setup
	$(PY) -m pytest -q -m "not slow and not postgres" -n $(FAST_JOBS) --dist loadfile

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

typecheck:
	.venv/bin/mypy tinyfleet

ctest:
	$(MAKE) -s -C agent_firmware check

# The whole suite in one process by default. TEST_JOBS=2 runs it on two pytest-xdist workers (a test file
# stays on one worker, each worker has its own databases, brokers and ports). One process took 29 to 31 minutes
# in all here (pytest 21.5 to 23.5); the two-worker run had load-related failures (a QEMU conformance stall, since
# fixed in the kit, and tight wall-time limits), so CI keeps to one process until it is shown green.
TEST_JOBS ?= 0
pytest:
	$(PY) -m pytest -q -n $(TEST_JOBS) --dist loadfile

clean:
	$(MAKE) -C agent_firmware clean
