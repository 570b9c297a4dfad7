import DLHubCore
import DLHubService
import DLHubTesting
import Foundation
import Hummingbird
import Testing

/// docs/openapi.yaml says what the service serves: every route it registers is described there,
/// and every path and method described there is registered.
@Suite struct OpenAPITests {
    /// `METHOD /path` for every operation in the document (its `paths:` block, read line by line).
    static func documented() throws -> Set<String> {
        let text = try String(contentsOfFile: BuiltProducts.packageRoot + "/docs/openapi.yaml", encoding: .utf8)
        var out: Set<String> = []
        var inPaths = false
        var path: String?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line == "paths:" { inPaths = true; continue }
            guard inPaths else { continue }
            if line.hasPrefix("  /"), line.hasSuffix(":") {
                path = String(line.dropFirst(2).dropLast())
            } else if let path, line.hasPrefix("    "), !line.hasPrefix("     "), line.hasSuffix(":") {
                let method = line.trimmingCharacters(in: .whitespaces).dropLast().uppercased()
                if ["GET", "POST", "PUT", "DELETE", "PATCH"].contains(method) { out.insert("\(method) \(path)") }
            } else if !line.hasPrefix(" "), !line.isEmpty {
                inPaths = false
            }
        }
        return out
    }

    @Test func everyRouteIsDescribedAndEveryDescriptionIsARoute() async throws {
        let harness = try await ServiceHarness()
        let registered = Set(harness.server.makeRouter().routes.map { "\($0.method) \($0.path)" })
        let documented = try Self.documented()
        #expect(!documented.isEmpty)
        #expect(
            registered.subtracting(documented).isEmpty,
            "routes missing from docs/openapi.yaml: \(registered.subtracting(documented).sorted())")
        #expect(documented.subtracting(registered).isEmpty, "documented but not served: \(documented.subtracting(registered).sorted())")
    }
}
