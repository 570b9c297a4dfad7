import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// What reaches a worker is decided by the service and the site, never by the servable or a
/// package it installs (DESIGN contract 10, pilot -> worker).
extension ClusterServingTests {
    @Suite struct SandboxIntegrityTests {
        init() throws {
            try TestUsers.require()
            try DevCluster.require()
        }

        /// Found from outside: fd 42 of every worker was a socket of the pilot's (Foundation's
        /// `Process` keeps its exit-watch socketpair open in the child, and the sandbox passed it on).
        @Test func aWorkerHoldsNoDescriptorBeyondItsStandardStreams() async throws {
            let h = try await ServingHarness(pools: [ServingHarness.pool("cpu", max: 1)])
            defer { h.stop() }
            let code = """
                import os

                def run(x):
                    # Every open descriptor but the ones this listing itself holds (listdir
                    # reads a copy of `listing`, closed again by the time the names are back).
                    listing = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
                    names = os.listdir(listing)
                    out = {}
                    for name in names:
                        if int(name) == listing:
                            continue
                        try:
                            out[name] = os.readlink("/proc/self/fd/" + name)
                        except FileNotFoundError:
                            continue
                        except OSError as e:
                            out[name] = "unreadable: " + str(e)
                    os.close(listing)
                    return out
                """
            let id = try await h.publish(
                try ServingFixtures.pythonModule(
                    in: h.work.path, name: "fds", module: "fds", code: code, function: "run", output: ["type": "dict"]))
            // Twice: the first worker, and one started after another's exit (a restarted worker).
            for round in 0..<2 {
                let reply = try await h.api.run(id, ["input": "which"])
                let fds = try #require(reply.json["output"]?.objectValue, "\(reply.json)")
                #expect(Set(fds.keys) == ["0", "1", "2"], "round \(round): the worker holds \(fds)")
                #expect(fds.values.allSatisfy { $0.stringValue?.hasPrefix("socket:") == false }, "\(fds)")
                _ = try await h.api.run(id, ["input": "again"])
            }
        }

        /// Found from outside: a wheel whose data files wrote the environment's `pyvenv.cfg` with
        /// `home = /proc/1` made the pilot bind the node's `/proc` into the worker, which then saw
        /// munged, slurmd, dlhubd and the pilot, and reached their files through /proc/PID/root.
        @Test func aWheelThatWritesOutsideSitePackagesIsRefusedAndCannotWidenTheSandbox() async throws {
            let evil = LocalPackageIndex.Wheel(
                name: "dlhub-test-evil", version: "1.0",
                files: [
                    "dlhub_test_evil.py": "def ok(x):\n    return x\n",
                    "dlhub_test_evil-1.0.data/data/pyvenv.cfg": "home = /proc/1\ninclude-system-site-packages = false\nversion = 3.11.2\n",
                ])
            let index = try LocalPackageIndex(delay: 0, wheels: [evil, .greeting])
            defer { index.stop() }
            let h = try await ServingHarness(
                pools: [ServingHarness.pool("cpu", max: 1)], extraConfig: ["package_index": .string(index.url)])
            defer { h.stop() }
            // What the worker would see of the node: other processes, and the service's files.
            let code = """
                import os

                def run(x):
                    pids = [p for p in os.listdir("/proc") if p.isdigit()]
                    seen = []
                    for p in pids:
                        try:
                            with open("/proc/%s/cmdline" % p, "rb") as f:
                                seen.append(f.read().replace(b"\\0", b" ").decode(errors="replace")[:80])
                        except OSError:
                            pass
                    return {"processes": len(pids), "seen": seen}
                """
            let id = try await h.publish(
                try ServingFixtures.pythonModule(
                    in: h.work.path, name: "widened", module: "widened", code: code, function: "run", output: ["type": "dict"],
                    dependencies: ["dlhub-test-evil": "1.0"]))
            let reply = try await h.api.run(id, ["input": "look"], wait: 300)
            if let seen = reply.json["output"]?["seen"]?.arrayValue {
                let names = seen.compactMap(\.stringValue)
                Issue.record("the worker ran and sees \(names.count) processes: \(names.prefix(12))")
                #expect(!names.contains { $0.contains("munged") || $0.contains("slurmd") || $0.contains("dlhubd") })
            }
            // The build is refused, naming the file and the package it came from.
            #expect(reply.status >= 400 || reply.json["status"] == "failed", "\(reply.status) \(reply.json)")
            let message = reply.errorMessage + (reply.json["error"]?.stringValue ?? "") + "\(reply.json)"
            #expect(message.contains("pyvenv.cfg"), "\(reply.json)")
            #expect(message.contains("dlhub-test-evil") || message.contains("dlhub_test_evil"), "\(reply.json)")

            // A package that stays inside site-packages still builds and runs.
            let fine = try await h.publish(
                try ServingFixtures.pythonModule(
                    in: h.work.path, name: "greeter", module: "greeter",
                    code: "import dlhub_test_greeting\ndef run(x):\n    return dlhub_test_greeting.greet(x)\n", function: "run",
                    dependencies: ["dlhub-test-greeting": "1.0"]))
            let greeted = try await h.api.run(fine, ["input": "ada"], wait: 300)
            #expect(greeted.json["output"] == "hello, ada", "\(greeted.status) \(greeted.json)")
        }
    }
}
