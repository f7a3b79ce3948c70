# xdpd: the commands a newcomer needs (see README.md).
PYTHON ?= /usr/bin/python3
export PYTHONDONTWRITEBYTECODE = 1

.PHONY: setup test unit kernel demo bench clean

setup:
	sh tools/setup-host.sh

# Everything: unit tests (no root needed) and real-kernel tests.
test: setup
	$(PYTHON) -m pytest -q -p no:cacheprovider tests

unit:
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/unit

kernel: setup
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/kernel

demo: setup
	$(PYTHON) tools/demo.py

bench: setup
	$(PYTHON) tools/bench.py

clean:
	rm -rf dist build .pytest_cache .hypothesis
	find . -name __pycache__ -prune -exec rm -rf {} +
