import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// What one worker may take of its node is bounded per worker, not only per user (issue 17,
/// "Sandbox integrity"): what it writes (`/tmp`, `/dev/shm`, `/scratch`), what of its stderr
/// reaches the pilot's log on the shared filesystem, and how many processes it runs.
extension ClusterServingTests {
    @Suite struct WorkerBoundsTests {
        init() throws {
            try TestUsers.require()
            try DevCluster.require()
        }

        static let tmpMB = 16
        static let maxProcesses = 32

        static func harness() async throws -> ServingHarness {
            try await ServingHarness(
                pools: [ServingHarness.pool("cpu", max: 1)],
                extraConfig: ["worker_tmp_mb": .int(Int64(tmpMB)), "worker_max_processes": .int(Int64(maxProcesses))])
        }

        /// Found by reading the sandbox: `/tmp` was a sized tmpfs, but `/dev/shm` was bwrap's
        /// unsized one and `/scratch` a directory on the node's disk, so a worker could fill the
        /// node's memory or its local disk.
        @Test func aWorkerCannotWriteMoreThanItsBoundAnywhere() async throws {
            let h = try await Self.harness()
            defer { h.stop() }
            let code = """
                import os

                def fill(where):
                    # Writes up to 64 MiB, a MiB at a time, and says how far it got.
                    block = b"x" * (1 << 20)
                    written = 0
                    try:
                        with open(os.path.join(where, "fill"), "wb") as f:
                            while written < (64 << 20):
                                f.write(block)
                                f.flush()
                                written += len(block)
                    except OSError as e:
                        return {"written": written, "error": e.strerror}
                    finally:
                        try:
                            os.remove(os.path.join(where, "fill"))
                        except OSError:
                            pass
                    return {"written": written, "error": None}
                """
            let id = try await h.publish(
                try ServingFixtures.pythonModule(
                    in: h.work.path, name: "filler", module: "filler", code: code, function: "fill", output: ["type": "dict"]))
            // The red team found bwrap's own root and /dev writable (unsized tmpfs mounts).
            for place in ["/", "/etc", "/dev"] {
                let reply = try await h.api.run(id, ["input": .string(place)], wait: 120)
                #expect(reply.json["output"]?["written"] == 0, "\(place): \(reply.json)")
                #expect(reply.json["output"]?["error"]?.stringValue != nil, "\(place) took 64 MiB: \(reply.json)")
            }
            for place in ["/tmp", "/dev/shm", "/scratch"] {
                let reply = try await h.api.run(id, ["input": .string(place)], wait: 120)
                let written = reply.json["output"]?["written"]?.intValue ?? -1
                #expect(written >= 0 && written <= Int64(Self.tmpMB) << 20, "\(place): \(reply.json)")
                #expect(reply.json["output"]?["error"]?.stringValue != nil, "\(place) took 64 MiB: \(reply.json)")
            }
            // The worker is still usable afterwards.
            #expect(try await h.api.run(id, ["input": "/tmp"], wait: 120).json["output"]?["written"] != nil)
        }

        /// Found by reading the pilot: every byte a worker wrote to stderr was copied to the
        /// pilot's log on the shared filesystem, so one `print(..., file=sys.stderr)` in a loop
        /// filled the service's registry volume.
        @Test func aWorkersStderrReachesThePilotLogOnlyUpToABound() async throws {
            let h = try await Self.harness()
            defer { h.stop() }
            let code = """
                import sys

                def shout(x):
                    line = "y" * 1023 + "\\n"
                    for _ in range(int(x) * 1024):
                        sys.stderr.write(line)
                    sys.stderr.flush()
                    return x
                """
            let id = try await h.publish(
                try ServingFixtures.pythonModule(
                    in: h.work.path, name: "shouter", module: "shouter", code: code, function: "shout", input: ["type": "integer"],
                    output: ["type": "integer"]))
            // 8 MiB of stderr per request, three times.
            for _ in 0..<3 { #expect(try await h.api.run(id, ["input": 8], wait: 120).json["output"] == 8) }
            let logs = h.service.registry + "/.pilot-logs"
            let files = try FileManager.default.contentsOfDirectory(atPath: logs).filter { $0.hasPrefix("pilot-") && $0.hasSuffix(".out") }
            let sizes = try files.map { (try FileManager.default.attributesOfItem(atPath: logs + "/" + $0)[.size] as? Int) ?? 0 }
            let total = sizes.reduce(0, +)
            print("stderr bound: 24 MiB written to stderr, \(total) bytes in pilot logs")
            #expect(!files.isEmpty)
            #expect(total < 4 << 20, "pilot logs hold \(total) bytes of 24 MiB a worker wrote to stderr")
            // The owner's log entries stay bounded too.
            let entries = try await h.api.send("GET", "/v1/servables/\(id)/logs").json["entries"]?.arrayValue ?? []
            #expect(entries.allSatisfy { ($0["text"]?.stringValue?.utf8.count ?? 0) <= 64 << 10 }, "\(entries.count) entries")
        }

        /// Found by reading the sandbox: RLIMIT_NPROC counts every process of the service account
        /// on the node, so one worker could hold a thousand processes and starve every other
        /// worker of the pilot. A worker with more than its own bound is stopped, and says why.
        @Test func aWorkerWithMoreProcessesThanItsBoundIsStoppedAndSaysWhy() async throws {
            let h = try await Self.harness()
            defer { h.stop() }
            let code = """
                import os, signal, time

                def spawn(n):
                    kids = []
                    try:
                        for _ in range(int(n)):
                            pid = os.fork()
                            if pid == 0:
                                time.sleep(30)
                                os._exit(0)
                            kids.append(pid)
                        time.sleep(8)
                        return "held %d" % len(kids)
                    finally:
                        for pid in kids:
                            try:
                                os.kill(pid, signal.SIGKILL)
                                os.waitpid(pid, 0)
                            except OSError:
                                pass
                """
            let id = try await h.publish(
                try ServingFixtures.pythonModule(
                    in: h.work.path, name: "spawner", module: "spawner", code: code, function: "spawn", input: ["type": "integer"],
                    output: ["type": "string"], timeout: 60))
            // Under the bound: fine.
            let few = try await h.api.run(id, ["input": 4], wait: 120)
            #expect(few.json["output"] == "held 4", "\(few.json)")
            // Over it: the worker is stopped, and the error names the bound.
            let many = try await h.api.run(id, ["input": .int(Int64(Self.maxProcesses * 3))], wait: 120)
            #expect(many.json["status"] == "failed", "\(many.json)")
            let error = many.json["error"]?.stringValue ?? ""
            #expect(error.contains("\(Self.maxProcesses) processes"), "\(error)")
            // A new worker takes the next request.
            #expect(try await h.api.run(id, ["input": 2], wait: 120).json["output"] == "held 2")
        }

        /// Found by the red team: the count was of processes, and RLIMIT_NPROC counts threads; a
        /// worker held 1,118 threads in two processes, and no other user's worker could start.
        @Test func threadsCountAgainstAWorkersBoundToo() async throws {
            let h = try await Self.harness()
            defer { h.stop() }
            let code = """
                import threading, time

                def hold(n):
                    stop = threading.Event()
                    threads = [threading.Thread(target=stop.wait, daemon=True) for _ in range(int(n))]
                    for t in threads:
                        t.start()
                    time.sleep(8)
                    stop.set()
                    return "held %d threads" % len(threads)
                """
            let id = try await h.publish(
                try ServingFixtures.pythonModule(
                    in: h.work.path, name: "threader", module: "threader", code: code, function: "hold", input: ["type": "integer"],
                    output: ["type": "string"], timeout: 60))
            #expect(try await h.api.run(id, ["input": 4], wait: 120).json["output"] == "held 4 threads")
            let many = try await h.api.run(id, ["input": .int(Int64(Self.maxProcesses * 3))], wait: 120)
            #expect(many.json["status"] == "failed", "\(many.json)")
            let error = many.json["error"]?.stringValue ?? ""
            #expect(error.contains("\(Self.maxProcesses) processes and threads"), "\(many.json)")
            #expect(try await h.api.run(id, ["input": 2], wait: 120).json["output"] == "held 2 threads")
        }

        /// Found by the red team: what a worker wrote to stderr during one call stayed in the
        /// pilot's memory (800 MB of it took the pilot to 842 MB), because trimming a `Data` to its
        /// suffix keeps its storage.
        @Test func aWorkersStderrDoesNotFillThePilotsMemory() async throws {
            let h = try await Self.harness()
            defer { h.stop() }
            let code = """
                import os

                def shout(mb):
                    block = b"z" * (1 << 20)
                    for _ in range(int(mb)):
                        os.write(2, block)
                    return mb
                """
            let id = try await h.publish(
                try ServingFixtures.pythonModule(
                    in: h.work.path, name: "loud", module: "loud", code: code, function: "shout", input: ["type": "integer"],
                    output: ["type": "integer"]))
            #expect(try await h.api.run(id, ["input": 1], wait: 120).json["output"] == 1)
            func pilotRSS() throws -> Int {
                let out = try Subprocess.run("/usr/bin/ps", ["-C", "dlhub-pilot", "-o", "rss="]).stdout
                return out.split(separator: "\n").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }.max() ?? 0
            }
            let before = try pilotRSS()
            let watching = Task {
                var most = 0
                while !Task.isCancelled {
                    most = max(most, (try? pilotRSS()) ?? 0)
                    try? await Task.sleep(for: .milliseconds(50))
                }
                return most
            }
            #expect(try await h.api.run(id, ["input": 400], wait: 300).json["output"] == 400)
            watching.cancel()
            let grown = await watching.value - before
            print("stderr bound: 400 MB of stderr in one call grew the pilot by \(grown) KB")
            #expect(before > 0)
            #expect(grown < 100_000, "400 MB of stderr grew the pilot by \(grown) KB")
        }

        /// Found by the red team: a batch split after a crash runs each input on a fresh worker,
        /// each with its own 256 KiB of the pilot's log (one request of 52 inputs wrote 13 MB), and
        /// a worker's lines passed for the pilot's own, terminal escapes and all.
        @Test func workersCannotFloodOrForgeThePilotLog() async throws {
            let h = try await Self.harness()
            defer { h.stop() }
            let code = """
                import os

                def crash(x):
                    os.write(2, b"2026-12-04T00:00:00+0000 error dlhub-pilot: FORGED \\x1b[31mred\\x1b[0m\\n")
                    os.write(2, b"q" * (300 << 10))
                    os._exit(1)
                """
            let id = try await h.publish(
                try ServingFixtures.pythonModule(
                    in: h.work.path, name: "forger", module: "forger", code: code, function: "crash", timeout: 30))
            _ = try await h.api.run(id, ["input": "warm"], wait: 120)
            let reply = try await h.api.run(id, ["inputs": .array((0..<64).map { .string("x\($0)") })], wait: 300)
            #expect(reply.json["status"] == "failed", "\(reply.json["status"] ?? .null)")
            let logs = h.service.registry + "/.pilot-logs"
            let files = try FileManager.default.contentsOfDirectory(atPath: logs).filter { $0.hasPrefix("pilot-") && $0.hasSuffix(".out") }
            var text: [UInt8] = []
            for f in files { text += Array(FileManager.default.contents(atPath: logs + "/" + f) ?? Data()) }
            print("stderr bound: 65 crashing workers, \(text.count) bytes in pilot logs")
            #expect(text.count < 6 << 20, "\(text.count) bytes in pilot logs")
            #expect(!text.contains(0x1B), "a terminal escape reached the pilot's log")
            let lines = String(decoding: text, as: UTF8.self).split(separator: "\n")
            let forged = lines.filter { $0.contains("FORGED") }
            #expect(!forged.isEmpty)
            #expect(forged.allSatisfy { $0.hasPrefix("[worker ") }, "\(forged.prefix(2))")
        }

        /// Found by the red team: `--disable-userns` was refused by bwrap without `--unshare-user`,
        /// so the pilot's check dropped it and a worker could make user namespaces.
        @Test func aWorkerCannotMakeUserNamespaces() async throws {
            let h = try await Self.harness()
            defer { h.stop() }
            let code = """
                import ctypes, os

                def probe(x):
                    libc = ctypes.CDLL(None, use_errno=True)
                    rc = libc.unshare(0x10000000)
                    return "unshare %d %s" % (rc, os.strerror(ctypes.get_errno()) if rc else "")
                """
            let id = try await h.publish(
                try ServingFixtures.pythonModule(in: h.work.path, name: "userns", module: "userns", code: code, function: "probe"))
            let answer = try await h.api.run(id, ["input": "x"], wait: 120).json["output"]?.stringValue ?? ""
            #expect(answer.hasPrefix("unshare -1"), "a worker made a user namespace: \(answer)")
        }
    }
}
