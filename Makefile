# iommufs: `make mount` sets everything up and mounts the default topology on
# ./mount in the foreground; `make test` sets everything up and runs every test.

MOUNT_DIR ?= mount
TOPOLOGY ?= sysfs-schema/topologies/default.yaml
DEBIAN_PACKAGES := libfuse2 fuse libfuse3-dev pkg-config gcc g++ libc6-dev make python3 bash coreutils
STAMP := node_modules/.installed

.PHONY: all setup deps build ts native shim supervisor header prepared examples python install mount test unit lint docs bench fuzz clean

all: build

# Debian packages: libfuse3-dev (with pkg-config, gcc/g++, make, python3 for
# node-gyp) builds the libfuse3 binding, the default backend; libfuse2 is what
# fuse-native's prebuilt addon links (the fallback backend), fuse provides
# fusermount; gcc builds the ioctl shim. Debian's fuse3 package is not needed
# (as root, libfuse3 mounts with mount(2)) and would replace fuse.
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

# build = the TypeScript, the libfuse3 binding, the ioctl shim, the generated C header and the C programs
build: setup
	$(MAKE) --no-print-directory ts
	$(MAKE) --no-print-directory native shim supervisor examples

# compiled only when a TypeScript source, the config or the installed modules changed
TS_SOURCES := $(shell find src test bench examples -name '*.ts' 2>/dev/null) tsconfig.json
TS_STAMP := dist/.ts-built

ts: $(TS_STAMP)

$(TS_STAMP): $(TS_SOURCES) $(STAMP)
	npx tsc -p .
	chmod +x dist/src/cli/main.js
	@touch $@

# ---- the libfuse3 binding (native/fuse3), built with node-gyp against the installed Node's own
# headers (--nodedir: nothing is downloaded); node-gyp is the copy npm bundles ----
NATIVE := dist/native/fuse3.node
NODE_DIR := $(shell node -p "require('path').resolve(process.execPath, '../..')")
NODE_GYP := $(shell node -p "require('path').join(require('fs').realpathSync('$(shell command -v npm)'), '../../node_modules/node-gyp/bin/node-gyp.js')")

native: $(NATIVE)

$(NATIVE): native/fuse3/fuse3.c native/fuse3/warm.c native/fuse3/warm.h native/fuse3/binding.gyp
	@test -f "$(NODE_DIR)/include/node/node_api.h" || { echo "Node's headers are not in $(NODE_DIR)/include/node"; exit 1; }
	@test -f "$(NODE_GYP)" || { echo "node-gyp (bundled with npm) not found at $(NODE_GYP)"; exit 1; }
	cd native/fuse3 && node "$(NODE_GYP)" rebuild --nodedir="$(NODE_DIR)" --loglevel=warn
	@mkdir -p $(@D)
	# a new file renamed into place: a running server keeps the library it loaded
	cp native/fuse3/build/Release/fuse3.node $@.tmp && mv -f $@.tmp $@

# ---- ioctl shim (LD_PRELOAD; run programs under it with `iommufs exec -- PROGRAM`) ----
CC := gcc
SHIM := dist/ioctl-shim/libiommufs-shim.so
CFLAGS_EXAMPLES := -O2 -Wall -Wextra -Idist/include

shim: $(SHIM)

# code the shim and the supervisor share
SHIM_COMMON := ioctl-shim/frames.c ioctl-shim/kernel-files.c
SHIM_HEADERS := ioctl-shim/frames.h ioctl-shim/kernel-files.h ioctl-shim/iommufs-shim.h

$(SHIM): ioctl-shim/iommufs-shim.c $(SHIM_COMMON) $(SHIM_HEADERS)
	@mkdir -p $(@D)
	$(CC) -shared -fPIC -O2 -Wall -Wextra -o $@ ioctl-shim/iommufs-shim.c $(SHIM_COMMON) -ldl -lpthread

# `iommufs exec --namespace`'s supervisor: hands the program the descriptors a real ioctl() cannot
NS_EXEC := dist/ioctl-shim/iommufs-ns-exec

supervisor: header
	@$(MAKE) --no-print-directory $(NS_EXEC)

$(NS_EXEC): ioctl-shim/ns-exec.c $(SHIM_COMMON) $(SHIM_HEADERS) $(HEADER)
	@mkdir -p $(@D)
	$(CC) -O2 -Wall -Wextra -Idist/include -o $@ ioctl-shim/ns-exec.c $(SHIM_COMMON)

# what `npm install` from git needs after tsc (package.json's prepare): no npm ci, no apt;
# without libfuse3-dev the binding is left out and only the fuse-native backend works
prepared: shim header supervisor
	@$(MAKE) --no-print-directory native || echo "iommufs: the libfuse3 binding did not build (libfuse3-dev?): use --backend fuse-native"

# ---- iommufd.h, generated from the TypeScript uAPI table (src/uapi), never written by hand ----
HEADER := dist/include/iommufd.h

# regenerated on every build; replaced only when its text changed, so the programs rebuild only then
header:
	@mkdir -p $(dir $(HEADER))
	@node dist/src/cli/main.js header > $(HEADER).tmp
	@if cmp -s $(HEADER).tmp $(HEADER); then rm $(HEADER).tmp; else mv $(HEADER).tmp $(HEADER); echo "wrote $(HEADER)"; fi

# ---- C programs written against the kernel uAPI (examples/c) and the benchmark's ioctl loop ----
C_EXAMPLES := nested-smmuv3 nested-vtd errors fds threads dma events kvm
# test programs (test/c): the same helpers as the examples; static ones on purpose, as no
# LD_PRELOAD can reach them, only real ioctl()s through the mount
STATIC_TESTS := dist/test/c/real-ioctl dist/test/c/ns-descriptors
C_TESTS := fork-share thread-text close-sync fuzz-shim iopf map-file attr-fresh file-pages pin-owner queue-hold pasid fail-nth
EXAMPLE_BINS := $(addprefix dist/examples/c/,$(C_EXAMPLES)) $(addprefix dist/test/c/,$(C_TESTS)) $(STATIC_TESTS) \
  dist/examples/suites/c/suite dist/bench/ioctl-loop dist/bench/ioctl-mixed dist/bench/transport-loop dist/bench/events-loop dist/bench/ref-server

examples: header
	@$(MAKE) --no-print-directory $(EXAMPLE_BINS)

dist/examples/c/%: examples/c/%.c examples/c/example.h $(HEADER)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_EXAMPLES) -o $@ $< -lpthread

dist/test/c/%: test/c/%.c examples/c/example.h $(HEADER)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_EXAMPLES) -Iexamples/c -o $@ $<

$(STATIC_TESTS): dist/test/c/%: test/c/%.c examples/c/example.h $(HEADER)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_EXAMPLES) -Iexamples/c -static -o $@ $< -lpthread

# a test suite of the kind users run under `iommufs run` (examples/suites/)
dist/examples/suites/c/suite: examples/suites/c/suite.c examples/c/example.h $(HEADER)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_EXAMPLES) -o $@ $<

dist/bench/ioctl-loop: bench/ioctl-loop.c $(HEADER)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_EXAMPLES) -o $@ $<

dist/bench/transport-loop: bench/transport-loop.c $(HEADER)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_EXAMPLES) -o $@ $<

dist/bench/events-loop: bench/events-loop.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_EXAMPLES) -o $@ $< -lpthread

dist/bench/ioctl-mixed: bench/ioctl-mixed.c $(HEADER)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_EXAMPLES) -o $@ $<

# the transport benchmark's C reference server (libfuse3 low level)
dist/bench/ref-server: bench/ref-server.c
	@mkdir -p $(@D)
	$(CC) -O2 -Wall -Wextra $$(pkg-config --cflags fuse3) -o $@ $< $$(pkg-config --libs fuse3)

# ---- the Python module, generated from the same tables as the header; kept in the repository ----
python: ts
	node dist/src/cli/main.js header --python > python/iommufs.py

# ---- make install PREFIX=DIR: headers, the shim, the iommufs command, pkg-config, the Python module ----
PREFIX ?= /usr/local
VERSION := $(shell node -p "require('./package.json').version")
# the runtime dependencies the command needs (no dev dependencies)
RUNTIME_MODULES = $(shell npm ls --omit=dev --all --parseable 2>/dev/null | tail -n +2 | sed 's|^$(CURDIR)/||')

install: build
	@P='$(DESTDIR)$(PREFIX)'; L="$$P/lib/iommufs"; set -e; \
	install -d "$$P/bin" "$$P/include/iommufs" "$$P/lib/pkgconfig"; \
	install -m 644 $(HEADER) "$$P/include/iommufs/iommufd.h"; \
	install -m 644 ioctl-shim/iommufs-shim.h "$$P/include/iommufs/iommufs-frames.h"; \
	install -m 755 $(SHIM) "$$P/lib/libiommufs-shim.so"; \
	rm -rf "$$L"; install -d "$$L/dist" "$$L/python"; \
	cp -r package.json LICENSE sysfs-schema "$$L/"; cp -r dist/src dist/include dist/ioctl-shim dist/native "$$L/dist/"; \
	install -m 644 python/iommufs.py "$$L/python/"; \
	for m in $(RUNTIME_MODULES); do install -d "$$L/$$(dirname $$m)"; cp -r "$$m" "$$L/$$m"; done; \
	printf '#!/bin/sh\nexec node "%s/lib/iommufs/dist/src/cli/main.js" "$$@"\n' '$(PREFIX)' > "$$P/bin/iommufs"; chmod 755 "$$P/bin/iommufs"; \
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' iommufs.pc.in > "$$P/lib/pkgconfig/iommufs.pc"; \
	echo "installed iommufs $(VERSION) in $$P"

mount: build
	node dist/src/cli/main.js mount $(MOUNT_DIR) --topology $(TOPOLOGY)

test: build
	npx mocha

# the fuzzer (test/fuzz/fuzz.ts): a medium pass by default; FUZZ_ARGS for more, e.g. the long pass
# FUZZ_ARGS="--inputs 1000000 --mount-inputs 50000 --shim-inputs 50000 --seconds 7200"
FUZZ_ARGS ?= --seed 1 --inputs 30000 --mount-inputs 2000 --shim-inputs 2000 --seconds 120
fuzz: build
	node dist/test/fuzz/fuzz.js $(FUZZ_ARGS)

# API documentation, generated from the comments of src/index.ts: dist/docs/api/index.html
docs: ts
	npx typedoc

lint: setup
	npm run --silent lint

bench: build
	node dist/bench/read-latency.js
	node dist/bench/ioctl.js
	node dist/bench/transactions.js
	node dist/bench/invalidate.js
	node dist/bench/transport.js
	node dist/bench/dma.js
	node dist/bench/events.js
	node dist/bench/ioas.js

clean:
	rm -rf dist native/fuse3/build
