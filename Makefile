# tollgate — build, test and demo. See README.md.
GO        ?= go
BIN       ?= bin/tollgate
PAYSIM_BIN ?= $(dir $(BIN))paysim
GOFLAGS   ?=
# tollgate's version, linked into the binary (`tollgate version`): the tag of
# the checked-out commit, else a Go pseudo-version of it, plus +dirty when
# the work tree has changes. VERSION=v1.2.3 sets it; outside a git checkout
# it is left to Go's build information.
PSEUDO_VERSION = $(shell TZ=UTC git log -1 --format='v0.0.0-%cd-%h' --date=format-local:%Y%m%d%H%M%S --abbrev=12 2>/dev/null)
VERSION   ?= $(shell git describe --tags --exact-match 2>/dev/null || echo $(PSEUDO_VERSION))$(shell git status --porcelain 2>/dev/null | grep -q . && echo +dirty)
LDFLAGS    = $(if $(VERSION),-X github.com/tollgate/tollgate/cmd/tollgate/commands.Version=$(VERSION))
# xcaddy builds (see xcaddy.md): Caddy's version is the one go.mod pins.
XCADDY_BIN ?= bin/tollgate-xcaddy
CADDY_VERSION = $(shell $(GO) list -m -f '{{.Version}}' github.com/caddyserver/caddy/v2)
export CI

.PHONY: build test demo xcaddy redis-server prometheus bench-tools vet race bench chaos clean

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/tollgate
	@if [ -d cmd/paysim ]; then $(GO) build -o $(PAYSIM_BIN) ./cmd/paysim; fi

# tollgate with xcaddy from this checkout (minutes; see xcaddy.md). The
# module gets the commit's pseudo-version, so `tollgate version` names it.
xcaddy:
	$(GO) run github.com/caddyserver/xcaddy/cmd/xcaddy@v0.4.5 build $(CADDY_VERSION) --output $(XCADDY_BIN) \
		--with github.com/tollgate/tollgate@$(PSEUDO_VERSION)=.

# apt_install installs Debian's package $(2) when command $(1) is missing, and
# stops the service the package may start: the tests start their own.
define apt_install
	@command -v $(1) >/dev/null 2>&1 || { \
		echo "$(1) is missing: installing Debian's $(2) package (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(2) >/dev/null; \
		command -v $(1) >/dev/null || { echo "could not install $(2)"; exit 1; }; \
		systemctl stop $(2) >/dev/null 2>&1 || service $(2) stop >/dev/null 2>&1 || true; \
	}
endef

# The tests start their own redis-server processes; it must be installed.
redis-server:
	$(call apt_install,redis-server,redis-server)

# deploy/'s tests run promtool and a real prometheus (Debian's prometheus package).
prometheus:
	$(call apt_install,promtool,prometheus)
	$(call apt_install,prometheus,prometheus)

vet:
	$(GO) vet ./...

race:
	$(GO) test -race -count=1 -timeout 14m ./...

test: redis-server prometheus vet race

# run.sh checks its ports first, then installs redis-server when missing.
demo:
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
