import DLHubCore
import Foundation
import Testing

@Suite struct TarArchiveTests {
    @Test func writesAndReadsBackFilesDirectoriesLinksAndLongNames() throws {
        let long = String(repeating: "d", count: 80) + "/" + String(repeating: "f", count: 60) + ".bin"
        let entries = [
            TarEntry(path: "servable.json", kind: .file, contents: Array("{}".utf8)),
            TarEntry(path: "lib", kind: .directory, mode: 0o755),
            TarEntry(path: "lib/run.sh", kind: .file, mode: 0o755, contents: Array("#!/bin/sh\n".utf8)),
            TarEntry(path: "lib/link", kind: .symlink(target: "run.sh"), mode: 0o777),
            TarEntry(path: long, kind: .file, contents: [UInt8](repeating: 7, count: 1000)),
        ]
        let read = try TarArchive.read(TarArchive.write(entries))
        #expect(read == entries)
    }

    @Test func readsArchivesMadeByGNUTar() throws {
        let dir = try TemporaryPath()
        defer { dir.remove() }
        try dir.write("servable.json", "{}")
        try dir.write("sub/model.bin", String(repeating: "x", count: 3000))
        let tar = try dir.tar()
        let entries = try TarArchive.read(tar)
        #expect(Set(entries.map(\.path)) == ["servable.json", "sub", "sub/model.bin"])
        #expect(entries.first { $0.path == "sub/model.bin" }?.contents.count == 3000)
    }

    @Test(arguments: [
        ("../evil", "'..'"), ("/etc/passwd", "absolute path"), ("a/../../b", "'..'"),
    ])
    func refusesPathsLeavingTheServable(_ path: String, _ expected: String) {
        let tar = TarArchive.write([TarEntry(path: path, kind: .file, contents: [1])])
        do { _ = try TarArchive.read(tar); Issue.record("accepted \(path)") } catch {
            #expect(error.code == .invalidArchive)
            #expect(error.message.contains(expected))
        }
    }

    @Test(arguments: ["/etc/shadow", "../../outside", "sub/../../../x"])
    func refusesSymlinksLeadingOut(_ target: String) {
        let tar = TarArchive.write([TarEntry(path: "sub/link", kind: .symlink(target: target))])
        do { _ = try TarArchive.read(tar); Issue.record("accepted link to \(target)") } catch {
            #expect(error.message.contains("outside the servable directory"))
        }
    }

    @Test func refusesGarbage() {
        #expect(throws: DLHubError.self) { try TarArchive.read([UInt8](repeating: 65, count: 2048)) }
    }
}

/// A scratch directory for archive tests that shell out to GNU tar.
struct TemporaryPath {
    let path: String
    init() throws {
        path = "/tmp/dlhub-tar-\(UInt64.random(in: 0...UInt64.max))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func write(_ name: String, _ text: String) throws {
        let full = path + "/" + name
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: full, atomically: true, encoding: .utf8)
    }
    func tar() throws -> [UInt8] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/tar")
        p.arguments = ["-C", path, "-cf", path + ".tar", "servable.json", "sub"]
        try p.run()
        p.waitUntilExit()
        defer { try? FileManager.default.removeItem(atPath: path + ".tar") }
        return Array(FileManager.default.contents(atPath: path + ".tar") ?? Data())
    }
    func remove() { try? FileManager.default.removeItem(atPath: path) }
}
