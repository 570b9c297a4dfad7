import DLHubCore
import DLHubTesting
import Foundation
import Testing

/// Anyone on a login node can open connections to both of the service's ports. However many they
/// open, and whatever they send (nothing, garbage, a byte at a time, half a connection), the
/// service stays up, keeps serving, and lets real pilots in (DESIGN contract 10).
extension ClusterServingTests {
    @Suite struct ConnectionFloodTests {
        init() throws {
            try TestUsers.require()
            try DevCluster.require()
        }

        /// Found from outside: 100 idle connections to the pilot port ended dlhubd with
        /// "Deinited NIOAsyncWriter without calling finish()" (50 did not).
        @Test func thousandsOfConnectionsToThePilotPortNeitherCrashTheServiceNorKeepPilotsOut() async throws {
            let h = try await ServingHarness(pools: [ServingHarness.pool("cpu", max: 1)])
            defer { h.stop() }
            let id = try await h.publish(
                try ServingFixtures.pythonFunctions(
                    in: h.work.path, name: "flood", function: "behave", input: ["type": "string"], output: ["type": "string"]))
            let port = try #require(ClusterServingTests.IsolationEndToEndTests.pilotPort(in: h.service.log))

            // Before any pilot exists: 2,000 strangers of every kind, from another loopback address.
            let flood = ConnectionFlood(
                port: port, count: 2000, from: "127.0.0.2", behaviours: ConnectionFlood.Behaviour.allCases, seed: 17)
            #expect(h.service.process.isRunning, "dlhubd died under 2,000 connections to its pilot port:\n\(h.service.log.suffix(2000))")
            #expect(try await h.api.send("GET", "/healthz").status == 200)

            // The first request needs a pilot to connect and prove itself while the flood goes on.
            let second = ConnectionFlood(port: port, count: 500, from: "127.0.0.3", behaviours: [.idle, .slow], seed: 18)
            let answer = try await h.api.run(id, ["input": "through the flood"], wait: 120)
            #expect(answer.json["output"] == "THROUGH THE FLOOD", "\(answer.status) \(answer.json)")
            flood.trickle()
            second.trickle()

            // Strangers are bounded in number and in time: none of them is still connected after
            // the handshake deadline (5 s) has passed twice.
            try await Task.sleep(for: .seconds(11))
            #expect(flood.stillOpen() == 0, "\(flood.stillOpen()) of 2,000 strangers still connected after 11 s")
            #expect(second.stillOpen() == 0)
            #expect(h.service.process.isRunning)
            #expect(try await h.api.run(id, ["input": "after"]).json["output"] == "AFTER")
            #expect(h.service.log.contains("pilot connection dropped"), "the service did not log the strangers it dropped")
        }

        @Test func thousandsOfConnectionsToTheHTTPPortFromOnePeerDoNotKeepOthersOut() async throws {
            let service = try LiveService(config: ["http_idle_timeout_seconds": 30, "http_max_connections_per_peer": 200])
            defer { service.stop() }
            let port = try #require(URL(string: service.url)?.port)
            let flood = ConnectionFlood(port: port, count: 3000, from: "127.0.0.2", behaviours: ConnectionFlood.Behaviour.allCases, seed: 5)
            try await Task.sleep(for: .seconds(1))
            #expect(service.process.isRunning)
            // One peer keeps at most its share; the rest of its connections are closed as they are
            // accepted (the accept queue is deep, 4,096, so that a flood does not overflow it and
            // make the kernel reset other peers' connections: that takes dlhubd a moment).
            var open = flood.stillOpen()
            let deadline = Date().addingTimeInterval(10)
            while open > 200, Date() < deadline {
                try await Task.sleep(for: .milliseconds(250))
                open = flood.stillOpen()
            }
            #expect(open <= 200, "\(open) of one peer's 3,000 connections are held")
            // Another peer is served while that one holds its share.
            let other = APIClient(url: service.url)
            try await other.login(as: TestUsers.bob)
            #expect(try await other.send("GET", "/v1/servables").status == 200)
            #expect(service.log.contains("connections from one peer"), "the refusals are not logged")
        }

        /// A descriptor table about to fill is a refusal the service logs, never a crash. Found
        /// while writing this test: with its table full, dlhubd was ended by libdispatch (its
        /// thread-pool monitor traps when it cannot open /proc/self/task/...), so the service keeps
        /// a reserve of descriptors and refuses connections before the table is full. dlhubd
        /// started with a hard limit of 400 descriptors takes 3,000 connections on its ports and
        /// a client's request in the middle of them.
        @Test func aDescriptorTableAboutToFillIsARefusalNotACrash() async throws {
            // Limits that would let connections fill the whole table, if the service obeyed them.
            let service = try LiveService(
                config: ["http_max_connections_per_peer": 100_000, "http_max_connections": 100_000], descriptorLimit: 400)
            defer { service.stop() }
            let port = try #require(URL(string: service.url)?.port)
            let pilotPort = try #require(ClusterServingTests.IsolationEndToEndTests.pilotPort(in: service.log))
            for round in 0..<3 {
                var floods = [ConnectionFlood(port: port, count: 1500, from: "127.0.0.2", seed: UInt64(round))]
                floods.append(ConnectionFlood(port: pilotPort, count: 1500, from: "127.0.0.2", seed: UInt64(round + 10)))
                // A client in the middle of the flood: refused or served, never a crash.
                _ = try? await APIClient(url: service.url).send("GET", "/healthz")
                try await Task.sleep(for: .seconds(2))
                #expect(
                    service.process.isRunning, "dlhubd died with its descriptor table full (round \(round)):\n\(service.log.suffix(2000))")
                floods.forEach { $0.close() }
                floods = []
                // Once the flood is gone, the service serves again.
                var served = false
                for _ in 0..<50 where !served {
                    served = (try? await APIClient(url: service.url).send("GET", "/healthz").status) == 200
                    if !served { try await Task.sleep(for: .milliseconds(200)) }
                }
                #expect(served, "the service does not serve after the flood ended (round \(round))")
            }
            #expect(service.process.isRunning)
            #expect(service.log.contains("HTTP connection refused: too many open connections"), "the refusals were not logged")
        }
    }
}
