import ArgumentParser
import DLHubCore
import Foundation

/// Printing for people (aligned tables) and for scripts (JSON).
enum Output {
    static func json(_ value: JSONValue) {
        print(value.encodedString(pretty: true), terminator: "")
    }

    static func table(_ headers: [String], _ rows: [[String]]) {
        var widths = headers.map(\.count)
        for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in i == cells.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
        }
        print(line(headers))
        for row in rows { print(line(row)) }
    }

    static func truncate(_ s: String, _ n: Int) -> String {
        let flat = s.replacingOccurrences(of: "\n", with: " ")
        return flat.count <= n ? flat : String(flat.prefix(n - 1)) + "…"
    }

    static func error(_ message: String) {
        FileHandle.standardError.write(Data("dlhub: \(message)\n".utf8))
    }
}

extension CLIError {
    /// Runs a command body, printing a `CLIError` or `DLHubError` as one clear line and exiting 1.
    static func guarding(_ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let e as CLIError {
            Output.error(e.message)
            throw ExitCode.failure
        } catch let e as DLHubError {
            Output.error(e.description)
            throw ExitCode.failure
        }
    }
}
