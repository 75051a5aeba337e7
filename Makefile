# iommufs: `make mount` sets everything up and mounts the default topology on
# ./mount in the foreground; `make test` sets everything up and runs every test.

MOUNT_DIR ?= mount
TOPOLOGY ?= sysfs-schema/topologies/default.yaml
DEBIAN_PACKAGES := libfuse2 fuse gcc libc6-dev make bash coreutils
STAMP := node_modules/.installed

.PHONY: all setup deps build ts shim header examples mount test unit lint bench clean

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

# build = the TypeScript, the ioctl shim, the generated C header and the C programs
build: setup
	$(MAKE) --no-print-directory ts
	$(MAKE) --no-print-directory shim examples

ts:
	npx tsc -p .
	chmod +x dist/src/cli/main.js

# ---- ioctl shim (LD_PRELOAD; run programs under it with `iommufs exec -- PROGRAM`) ----
CC := gcc
SHIM := dist/ioctl-shim/libiommufs-shim.so
CFLAGS_EXAMPLES := -O2 -Wall -Wextra -Idist/include

shim: $(SHIM)

$(SHIM): ioctl-shim/iommufs-shim.c ioctl-shim/iommufs-shim.h
	@mkdir -p $(@D)
	$(CC) -shared -fPIC -O2 -Wall -Wextra -o $@ ioctl-shim/iommufs-shim.c -ldl -lpthread

# ---- iommufd.h, generated from the TypeScript uAPI table (src/uapi), never written by hand ----
HEADER := dist/include/iommufd.h

# regenerated on every build; replaced only when its text changed, so the programs rebuild only then
header:
	@mkdir -p $(dir $(HEADER))
	@node dist/src/cli/main.js header > $(HEADER).tmp
	@if cmp -s $(HEADER).tmp $(HEADER); then rm $(HEADER).tmp; else mv $(HEADER).tmp $(HEADER); echo "wrote $(HEADER)"; fi

# ---- C programs written against the kernel uAPI (examples/c) and the benchmark's ioctl loop ----
C_EXAMPLES := nested-smmuv3 nested-vtd errors fds threads
EXAMPLE_BINS := $(addprefix dist/examples/c/,$(C_EXAMPLES)) dist/bench/ioctl-loop

examples: header
	@$(MAKE) --no-print-directory $(EXAMPLE_BINS)

dist/examples/c/%: examples/c/%.c examples/c/example.h $(HEADER)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_EXAMPLES) -o $@ $< -lpthread

dist/bench/ioctl-loop: bench/ioctl-loop.c $(HEADER)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_EXAMPLES) -o $@ $<

mount: build
	node dist/src/cli/main.js mount $(MOUNT_DIR) --topology $(TOPOLOGY)

test: build
	npx mocha

lint: setup
	npm run --silent lint

bench: build
	node dist/bench/read-latency.js
	node dist/bench/ioctl.js
	node dist/bench/transactions.js
	node dist/bench/invalidate.js

clean:
	rm -rf dist
