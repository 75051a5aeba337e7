# iommufs: `make mount` sets everything up and mounts the default topology on
# ./mount in the foreground; `make test` sets everything up and runs every test.

MOUNT_DIR ?= mount
TOPOLOGY ?= sysfs-schema/topologies/default.yaml
DEBIAN_PACKAGES := libfuse2 fuse gcc libc6-dev make bash coreutils
STAMP := node_modules/.installed

.PHONY: all setup deps build mount test unit lint bench clean

all: build

# Debian packages: libfuse2 is what fuse-native's prebuilt addon links,
# fuse provides fusermount (unmounting), gcc builds the ioctl shim.
deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: deps $(STAMP)

build: setup
	npx tsc -p .
	chmod +x dist/src/cli/main.js

mount: build
	node dist/src/cli/main.js mount $(MOUNT_DIR) --topology $(TOPOLOGY)

test: build
	npx mocha

lint: setup
	npm run --silent lint

bench: build
	node dist/bench/read-latency.js

clean:
	rm -rf dist
