import DLHubCore
import Foundation

/// Packs a servable directory into a tar archive the service accepts.
enum DirectoryArchiver {
    static let skipped: Set<String> = [".git", "__pycache__", ".ipynb_checkpoints", ".DS_Store"]

    static func archive(_ directory: String) throws -> [UInt8] {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue else {
            throw CLIError("\(directory) is not a directory; give the servable directory that holds servable.json")
        }
        guard fm.fileExists(atPath: directory + "/servable.json") else {
            throw CLIError("\(directory) has no servable.json; make one with `dlhub init`")
        }
        var entries: [TarEntry] = []
        func walk(_ relative: String) throws {
            let full = relative.isEmpty ? directory : directory + "/" + relative
            for item in try fm.contentsOfDirectory(atPath: full).sorted() where !skipped.contains(item) {
                let rel = relative.isEmpty ? item : relative + "/" + item
                let path = directory + "/" + rel
                let attrs = try fm.attributesOfItem(atPath: path)
                let mode = UInt32((attrs[.posixPermissions] as? Int) ?? 0o644)
                switch attrs[.type] as? FileAttributeType {
                case .typeDirectory?:
                    entries.append(TarEntry(path: rel, kind: .directory, mode: 0o755))
                    try walk(rel)
                case .typeSymbolicLink?:
                    entries.append(TarEntry(path: rel, kind: .symlink(target: try fm.destinationOfSymbolicLink(atPath: path))))
                case .typeRegular?:
                    guard let data = fm.contents(atPath: path) else { throw CLIError("cannot read \(path)") }
                    entries.append(TarEntry(path: rel, kind: .file, mode: mode, contents: Array(data)))
                default:
                    throw CLIError("\(path) is not a regular file, directory or symlink; remove it from the servable directory")
                }
            }
        }
        try walk("")
        return TarArchive.write(entries)
    }
}
