PREFIX ?= /opt/dlhub
REGISTRY ?= $(PREFIX)/registry

.PHONY: quickstart test install format build
quickstart: ; scripts/quickstart
test: ; scripts/test
build: ; swift build
install: ; scripts/install --prefix $(PREFIX) --registry $(REGISTRY) $(if $(WORKER_PYTHON),--worker-python $(WORKER_PYTHON))
format: ; swift format format --in-place --recursive Sources Tests Package.swift
