PREFIX ?= /opt/dlhub
REGISTRY ?= $(PREFIX)/registry

.PHONY: quickstart test install format build lint unit service e2e clean
quickstart: ; scripts/quickstart
test: ; scripts/test
build: ; swift build
install: ; scripts/install --prefix $(PREFIX) --registry $(REGISTRY) $(if $(WORKER_PYTHON),--worker-python $(WORKER_PYTHON))
format: ; swift format format --in-place --recursive Sources Tests Fuzz/Sources Package.swift Fuzz/Package.swift
lint: ; swift format lint --strict --recursive Sources Tests Fuzz/Sources Package.swift Fuzz/Package.swift
# Test tiers (README, "Tests"). The suites that start a service in-process (ServiceHarness) act
# as several Unix users with munge credentials: they are the service tier, not unit tests.
SERVICE_SUITES = AccessTests|BadInputTests|PublicationTests|WebCatalogueTests|OpenAPITests
# No root, no munge, no cluster; seconds after a build (scripts/test runs it as a test user).
unit: ; swift test --filter 'DLHubCoreTests|DLHubServiceTests' --skip '$(SERVICE_SUITES)'
# As root: the service in-process with real munge and the test users, and the libslurm/libmunge layer.
service: ; scripts/test-users && slurm/dev-cluster up && swift test --filter '$(SERVICE_SUITES)|DLHubClusterTests'
# As root: dlhubd, pilots and workers on the local Slurm cluster.
e2e: ; scripts/test-users && slurm/dev-cluster up && swift test --filter EndToEndTests
clean: ; rm -rf .build Fuzz/.build .quickstart state
