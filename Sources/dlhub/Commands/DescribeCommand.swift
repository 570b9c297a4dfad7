import ArgumentParser
import DLHubCore
import Foundation

/// `dlhub describe ID`: one servable's metadata and identifiers.
struct DescribeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "describe", abstract: "Show a servable: owner/name, owner/name@N or sha256:<digest>.")

    @OptionGroup var options: ClientOptions
    @Argument(help: "owner/name, owner/name@N or sha256:<digest>.") var id: String

    func run() async throws {
        try await CLIError.guarding {
            let reference = try ServableReference(parsing: id)
            let reply = try await options.client().request("GET", "/v1/servables/\(reference)")
            if options.json { return Output.json(reply.json) }
            let j = reply.json
            let m = j["metadata"] ?? .null
            print("\(j["id"]?.stringValue ?? "")@\(j["version"]?.intValue ?? 0)  \(j["title"]?.stringValue ?? "")")
            if let w = j["withdrawal"], !w.isNull {
                print(
                    "WITHDRAWN  on \(w["at"]?.stringValue ?? "") by \(w["by"]?.stringValue ?? "")\((w["reason"]?.stringValue).map { $0.isEmpty ? "" : ": \($0)" } ?? "")"
                )
            }
            if let f = j["load_failure"], !f.isNull {
                print(
                    "LOAD FAILED  on pilot job \(f["job_id"]?.intValue ?? 0) (\(f["node"]?.stringValue ?? "")) at \(f["at"]?.stringValue ?? ""), \(f["attempts"]?.intValue ?? 1) attempt(s): \(f["error"]?.stringValue ?? "")"
                )
                print("             tried again from \(f["retry_at"]?.stringValue ?? ""); `dlhub logs \(id)` shows what the worker wrote")
            }
            let authors = (m["datacite"]?["creators"]?.arrayValue ?? []).compactMap {
                $0["creatorName"]?.stringValue ?? $0["familyName"]?.stringValue
            }
            let rows: [(String, String)] = [
                ("digest", j["digest"]?.stringValue ?? ""),
                ("type", j["type"]?.stringValue ?? ""),
                ("input", j["input"]?.stringValue ?? ""),
                ("output", j["output"]?.stringValue ?? ""),
                ("authors", authors.joined(separator: "; ")),
                ("domains", (m["dlhub"]?["domains"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", ")),
                ("visible to", (j["visible_to"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", ")),
                ("published", m["dlhub"]?["publication_date"]?.stringValue ?? ""),
                ("versions", (j["versions"]?.arrayValue ?? []).compactMap { $0.intValue.map(String.init) }.joined(separator: ", ")),
                ("environment", Self.environment(j["environment"])),
                ("doi", j["doi"]?.stringValue ?? ""),
                ("license", j["license"]?.stringValue ?? ""),
                (
                    "related",
                    (j["related_identifiers"]?.arrayValue ?? []).map {
                        "\($0["relation"]?.stringValue ?? "") \($0["type"]?.stringValue ?? "") \($0["identifier"]?.stringValue ?? "")"
                    }.joined(separator: "; ")
                ),
            ]
            for (k, v) in rows where !v.isEmpty { print("  \(k.padding(toLength: 11, withPad: " ", startingAt: 0)) \(v)") }
            let description = (m["datacite"]?["descriptions"]?.arrayValue ?? []).compactMap { $0["description"]?.stringValue }.joined(
                separator: "\n")
            if !description.isEmpty { print("\n" + description) }
            if let card = j["model_card"]?.stringValue, !card.isEmpty { print("\n--- model card (README.md) ---\n" + card) }
            print("\ncite it: dlhub cite \(j["id"]?.stringValue ?? "")@\(j["version"]?.intValue ?? 0) --format bibtex")
        }
    }

    /// `python: scikit-learn==1.5.2 (building, 12 s)`, `modules: gcc/12`, `container: /x.sif`, `default`.
    static func environment(_ e: JSONValue?) -> String {
        guard let e, let type = e["type"]?.stringValue else { return "" }
        switch type {
        case "python":
            let packages = (e["packages"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: " ")
            var state = e["state"]?.stringValue ?? ""
            if state == "building", let s = e["building_for_s"]?.intValue { state = "building environment, \(s) s so far" }
            if state == "failed", let error = e["error"]?.stringValue { state = "FAILED: \(error)" }
            return "python: \(packages) (\(state))"
        case "modules": return "modules: " + (e["modules"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: " ")
        case "container": return "container: " + (e["image"]?.stringValue ?? "")
        default: return "the pool's default"
        }
    }
}
