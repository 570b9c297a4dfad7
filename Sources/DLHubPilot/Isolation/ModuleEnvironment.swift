import DLHubCore
import Foundation

/// The environment Lmod modules give a worker, computed on the pilot's node (outside the sandbox):
/// `module load` runs in a shell, and what it added to the environment is kept.
struct ModuleEnvironment: Sendable, Equatable {
    /// Variables the modules set or changed (path-like ones hold only the entries they added).
    var variables: [String: String]
    /// Directories the modules put on `PATH`, `LD_LIBRARY_PATH` and the like: the worker may read them.
    var directories: [String]

    static let pathVariables: Set<String> = [
        "PATH", "LD_LIBRARY_PATH", "LIBRARY_PATH", "CPATH", "PYTHONPATH", "PKG_CONFIG_PATH", "MANPATH", "CMAKE_PREFIX_PATH",
    ]

    /// Where Lmod's shell start-up may be, in order.
    static func initScript(environment: [String: String]) -> String? {
        var candidates: [String] = []
        if let pkg = environment["LMOD_PKG"] { candidates.append(pkg + "/init/bash") }
        candidates += ["/usr/share/lmod/lmod/init/bash", "/etc/profile.d/lmod.sh", "/usr/share/lmod/lmod/init/profile"]
        return candidates.first { FileManager.default.fileExists(atPath: $0) }
    }

    /// Loads `modules` in a shell with `base` as its environment and returns what they added.
    static func load(_ modules: [String], base: [String: String]) throws -> ModuleEnvironment {
        guard let initScript = initScript(environment: base) else {
            throw WorkerProcess.Failure.protocolError(
                "the servable needs modules (\(modules.joined(separator: " "))) but Lmod is not installed on this node")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments =
            [
                "--noprofile", "--norc", "-c",
                #"source "$1" >/dev/null 2>&1 || { echo "cannot start Lmod from $1" >&2; exit 90; }; shift; module load "$@" >&2 || exit 91; env -0"#,
                "dlhub-module-load", initScript,
            ] + modules
        process.environment = base
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let errors = DispatchQueue(label: "dlhub.module-load")
        nonisolated(unsafe) var errData = Data()
        let group = DispatchGroup()
        group.enter()
        errors.async {
            errData = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        let message = String(decoding: errData, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard process.terminationStatus == 0 else {
            throw WorkerProcess.Failure.protocolError(
                "module load \(modules.joined(separator: " ")) failed: \(message.isEmpty ? "exit status \(process.terminationStatus)" : String(message.suffix(600)))"
            )
        }
        var loaded: [String: String] = [:]
        for entry in outData.split(separator: 0) {
            let text = String(decoding: entry, as: UTF8.self)
            guard let eq = text.firstIndex(of: "=") else { continue }
            loaded[String(text[..<eq])] = String(text[text.index(after: eq)...])
        }
        return difference(base: base, loaded: loaded)
    }

    /// What `loaded` adds to `base`, without Lmod's own bookkeeping.
    static func difference(base: [String: String], loaded: [String: String]) -> ModuleEnvironment {
        var variables: [String: String] = [:]
        var directories: [String] = []
        for (key, value) in loaded where base[key] != value {
            if key.hasPrefix("LMOD") || key.hasPrefix("_") || key.hasPrefix("__LMOD") || key.hasPrefix("MODULE") || key == "SHLVL"
                || key == "OLDPWD" || key == "PWD"
            {
                continue
            }
            if pathVariables.contains(key) {
                let before = Set((base[key] ?? "").split(separator: ":").map(String.init))
                let added = value.split(separator: ":").map(String.init).filter { !before.contains($0) && $0.hasPrefix("/") }
                guard !added.isEmpty else { continue }
                variables[key] = added.joined(separator: ":")
                directories += added
            } else {
                variables[key] = value
            }
        }
        return ModuleEnvironment(variables: variables, directories: directories)
    }
}
