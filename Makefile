# mkstack: `make run` shows the stack against the Linux peer, `make test` runs the tests.
PY      := .venv/bin/python
DEBS    := iproute2 iputils-ping iptables curl iperf3 tcpdump netcat-openbsd tshark
STAMP   := .venv/.installed

.PHONY: venv run test test-unit test-system bench clean soak synflood
venv: $(STAMP)

$(STAMP): requirements.txt
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $(STAMP)

run: venv
	$(PY) launcher.py demo

test: venv
	$(PY) -m pytest -q --durations=15 tests/unit tests/integration tests/system

test-unit: venv
	$(PY) -m pytest -q tests/unit tests/integration

bench: venv
	$(PY) -m pip install -q -r requirements-bench.txt
	$(PY) -m tests.bench --peers pytcp --json tests/bench/results/bench.json --plot tests/bench/results/bench.png

soak: venv
	$(PY) -m tests.bench.soak --minutes 5 --interval 1 --json tests/bench/results/soak.json --readme README.md

synflood: venv
	$(PY) -m tests.bench.synflood --seconds 120 --json tests/bench/results/synflood.json

clean:
	rm -rf .venv .pytest_cache
