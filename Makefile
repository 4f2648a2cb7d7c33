# tollgate — build, test and demo. See README.md.
GO        ?= go
BIN       ?= bin/tollgate
GOFLAGS   ?=
# CI=true shortens the long runs (chaos, load).
export CI

.PHONY: build test demo redis-server bench-tools vet race bench chaos clean

build:
	$(GO) build -o $(BIN) ./cmd/tollgate
	@if [ -d cmd/paysim ]; then $(GO) build -o bin/paysim ./cmd/paysim; fi

# The tests start their own redis-server processes; it must be installed.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "redis-server is missing: installing Debian's redis-server package (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
		command -v redis-server >/dev/null || { echo "could not install redis-server"; exit 1; }; \
		systemctl stop redis-server >/dev/null 2>&1 || service redis-server stop >/dev/null 2>&1 || true; \
	}

vet:
	$(GO) vet ./...

race:
	$(GO) test -race -count=1 -timeout 14m ./...

test: redis-server vet race

demo: redis-server
	./demo/run.sh

# The load scripts need wrk, curl, openssl and python3 (Debian's packages) besides redis-server.
bench-tools: redis-server
	@for tool in wrk curl openssl python3; do command -v $$tool >/dev/null 2>&1 || { \
		echo "$$tool is missing: installing Debian's $$tool package (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$tool >/dev/null; \
		command -v $$tool >/dev/null || { echo "could not install $$tool"; exit 1; }; }; done

# Load scripts of bench/ (wrk, redis-server, paysim); results in bench/results/.
bench: bench-tools
	./bench/run.sh

clean:
	rm -rf bin

chaos: redis-server
	$(GO) test -tags chaos -run TestChaos -v -timeout 40m ./chaos
