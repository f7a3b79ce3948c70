# xdpd: the commands a newcomer needs (see README.md).
PYTHON ?= /usr/bin/python3
export PYTHONDONTWRITEBYTECODE = 1

.PHONY: setup test unit kernel e2e deb demo bench clean

# Beside tools/setup-host.sh's list, for the metrics (issue 11): Debian's
# Prometheus client library (a dependency of the package), and promtool, which
# the tests run on the scraped text.  On Debian 12 promtool comes only inside
# Debian's prometheus package, whose server a test machine has no use for (on
# a machine booted with systemd, installing it starts one on port 9090), so
# promtool alone is taken out of that package into $(PROMTOOL); Debian 13
# has a promtool package of its own, taken apart the same way.
PROMTOOL = /var/cache/xdpd-test/promtool

setup:
	sh tools/setup-host.sh
	@command -v tmux >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q tmux; }  # xdpd top's live view is tested in tmux
	@dpkg-query -W -f='$${Status}' python3-prometheus-client 2>/dev/null | grep -q "install ok installed" \
	    || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-prometheus-client; }
	@[ -x $(PROMTOOL) ] || { set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	    get='for p in promtool prometheus; do apt-get download -q -o APT::Sandbox::User=root $$p 2>/dev/null && exit; done; exit 1'; \
	    (cd "$$tmp" && { sh -c "$$get" || { apt-get update -q && sh -c "$$get"; }; }) >/dev/null; \
	    mkdir -p $(dir $(PROMTOOL)); deb=$$(ls "$$tmp"/*.deb); \
	    dpkg-deb --fsys-tarfile "$$deb" | tar -xOf - ./usr/bin/promtool > $(PROMTOOL).new; \
	    chmod 755 $(PROMTOOL).new; mv $(PROMTOOL).new $(PROMTOOL); \
	    echo "setup: $(PROMTOOL), from Debian's $${deb##*/} ($$($(PROMTOOL) --version 2>&1 | head -n 1))"; }

# Everything: unit tests (no root needed), real-kernel tests and the
# end-to-end test of the .deb under systemd (tests/e2e, also: make e2e).
test: setup
	$(PYTHON) -m pytest -q -p no:cacheprovider tests

unit:
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/unit

kernel: setup
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/kernel

# The .deb under a real systemd in a container: build, install, start,
# traffic, journal, reload, stop, purge; on Debian 12 and on Debian 13 (one
# container each, -k bookworm or -k trixie picks one).  The first run
# debootstraps a base per release (cached in /var/cache/xdpd-e2e).
e2e: setup
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/e2e

# dist/xdpd_<version>_all.deb, built from a copy of the tree (tracked and new
# files, not ignored ones), so the working tree gets no build leftovers.
# Debian's own tools and python3 only: a python3 earlier in PATH (pyenv, a
# venv) must not build the package.
deb: setup
	@set -e; tmp=$$(mktemp -d /var/tmp/xdpd-deb.XXXXXX); trap 'rm -rf "$$tmp"' EXIT; \
	mkdir "$$tmp/xdpd"; \
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	    git ls-files -z --cached --others --exclude-standard \
	        | tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$$tmp/xdpd"; \
	else \
	    tar --exclude=./dist --exclude=./.git -cf - . | tar -xf - -C "$$tmp/xdpd"; \
	fi; \
	(cd "$$tmp/xdpd" && env PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -b -us -uc) \
	    > "$$tmp/build.log" 2>&1 \
	    || { tail -n 60 "$$tmp/build.log"; echo "make deb: dpkg-buildpackage failed" >&2; exit 1; }; \
	mkdir -p dist; rm -f dist/xdpd_*_all.deb; mv "$$tmp"/xdpd_*_all.deb dist/; \
	ls dist/xdpd_*_all.deb

# The tools are modules of the package tools/, run from the repository root
# (where `-m` finds both tools/ and the tests/testbed/ helpers they import).
demo: setup
	$(PYTHON) -m tools.demo

bench: setup
	$(PYTHON) -m tools.bench.packet
	$(PYTHON) -m tools.bench.daemon
	$(PYTHON) -m tools.bench.linerate

clean:
	rm -rf dist build .pytest_cache .hypothesis
	find . -name __pycache__ -prune -exec rm -rf {} +
