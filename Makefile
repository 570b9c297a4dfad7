PREFIX ?= /opt/dlhub
REGISTRY ?= $(PREFIX)/registry

.PHONY: quickstart test install format build lint unit clean
quickstart: ; scripts/quickstart
test: ; scripts/test
build: ; swift build
install: ; scripts/install --prefix $(PREFIX) --registry $(REGISTRY) $(if $(WORKER_PYTHON),--worker-python $(WORKER_PYTHON))
format: ; swift format format --in-place --recursive Sources Tests Fuzz/Sources Package.swift Fuzz/Package.swift
lint: ; swift format lint --strict --recursive Sources Tests Fuzz/Sources Package.swift Fuzz/Package.swift
# What runs without root, munge or the cluster: the unit tests.
unit: ; swift test --filter 'DLHubCoreTests|DLHubServiceTests'
clean: ; rm -rf .build Fuzz/.build .quickstart state
