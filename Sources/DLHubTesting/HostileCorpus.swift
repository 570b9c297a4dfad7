import DLHubCore
import Foundation

/// Hostile uploads and requests, each with the answer the service must give: the corpus the
/// hardening tests replay against a live `dlhubd` (and `docs/hardening.md` tabulates).
///
/// Link targets and escaping paths aim at `canary`, so a test can check nothing reached it.
public enum HostileCorpus {
    public struct Case: Sendable {
        public var label: String
        public var body: [UInt8]
        /// The HTTP status the upload must get.
        public var status: Int
        /// Words the error message must contain ("" for any).
        public var message: String
    }

    public static let canary = "/tmp/dlhub-hostile-canary"

    /// The limits the corpus assumes the service runs with (`config`).
    public static let config: [String: JSONValue] = [
        "max_upload_bytes": 8_000_000, "max_archive_entries": 200, "max_unpacked_bytes": 16_000_000, "max_path_bytes": 1024,
        "max_path_depth": 32,
    ]

    static let doc = ServableFixtures.sklearnDocument()
    static func meta(_ doc: JSONValue = doc) -> TarEntry { TarEntry(path: "servable.json", kind: .file, contents: doc.encoded()) }
    static let model = TarEntry(path: "model.joblib", kind: .file, contents: Array("weights".utf8))
    static func tar(_ entries: [TarEntry]) -> [UInt8] { TarWriter.write(entries) }
    static func upload(_ extra: [TarEntry]) -> [UInt8] { tar([meta(), model] + extra) }
    static func raw(_ parts: [[UInt8]]) -> [UInt8] {
        TarWriter.block(tar([meta(), model]).dropLast(1024)) + parts.flatMap { $0 } + TarWriter.end
    }
    static func link(_ path: String, _ target: String) -> TarEntry { TarEntry(path: path, kind: .symlink(target: target)) }
    static func file(_ path: String, _ text: String = "x") -> TarEntry { TarEntry(path: path, kind: .file, contents: Array(text.utf8)) }
    static func dir(_ path: String) -> TarEntry { TarEntry(path: path, kind: .directory, mode: 0o755) }
    static func withMeta(_ change: (JSONValue) -> JSONValue) -> [UInt8] { tar([meta(change(doc)), model]) }
    static func rawMeta(_ text: String) -> [UInt8] {
        tar([TarEntry(path: "servable.json", kind: .file, contents: Array(text.utf8)), model])
    }

    /// The tar-based cases, built in Swift.
    public static func tarCases() -> [Case] {
        let p = canary
        let deep = (0..<40).map { "d\($0)" }.joined(separator: "/")
        var cases: [Case] = [
            // Paths.
            Case(label: "entry ../escape", body: upload([file("../escape")]), status: 400, message: "'..'"),
            Case(label: "entry a/../../b", body: upload([file("a/../../b")]), status: 400, message: "'..'"),
            Case(label: "entry ./../x", body: upload([file("./../x")]), status: 400, message: "'..'"),
            Case(label: "absolute entry", body: upload([file(p + "/absolute")]), status: 400, message: "absolute path"),
            Case(
                label: "path longer than the limit", body: upload([file(String(repeating: "p/", count: 600) + "x")]), status: 400,
                message: "longer than 1024"),
            Case(label: "nesting deeper than the limit", body: upload([file(deep + "/x")]), status: 400, message: "nested 41"),
            Case(
                label: "name component over 255 bytes", body: upload([file(String(repeating: "n", count: 300))]), status: 400,
                message: "longer than 255"),
            // Links of every shape.
            Case(
                label: "symlink out with ../", body: upload([link("out", "../../../../../.." + p)]), status: 400,
                message: "outside the servable"),
            Case(label: "absolute symlink", body: upload([link("out", p)]), status: 400, message: "outside the servable"),
            Case(
                label: "symlink to . then a file through it", body: upload([link("d", "."), file("d/x")]), status: 400,
                message: "goes through 'd'"),
            Case(
                label: "symlink to a directory then a file through it", body: upload([dir("sub"), link("s", "sub"), file("s/x")]),
                status: 400,
                message: "goes through 's'"),
            Case(
                label: "link chain leaving the servable", body: upload([link("a", "b"), link("b", "..")]), status: 400,
                message: "outside the servable"),
            Case(
                label: "link through a link", body: upload([dir("sub"), file("sub/f"), link("l1", "sub"), link("l2", "l1/f")]), status: 400,
                message: "points through the symlink 'l1'"),
            Case(label: "link to itself", body: upload([link("self", "self")]), status: 400, message: "points through the symlink 'self'"),
            Case(label: "link loop", body: upload([link("a", "b"), link("b", "a")]), status: 400, message: "points through the symlink"),
            Case(
                label: "link then a file of the same name", body: upload([link("x", "model.joblib"), file("x")]), status: 400,
                message: "appears twice"),
            Case(
                label: "file then a link of the same name", body: upload([file("y"), link("y", "model.joblib")]), status: 400,
                message: "appears twice"),
            Case(
                label: "directory over a link", body: upload([dir("sub"), link("d", "sub"), dir("d/inner")]), status: 400,
                message: "goes through 'd'"),
            Case(label: "file under a file", body: upload([file("f"), file("f/x")]), status: 400, message: "goes through 'f'"),
            Case(
                label: "servable.json as a symlink",
                body: tar([file("real.json", doc.encodedString()), link("servable.json", "real.json"), model]),
                status: 400, message: "servable.json is a symlink"),
            Case(label: "servable.json twice", body: tar([meta(), meta(), model]), status: 400, message: "appears twice"),
            // Special entries.
            Case(
                label: "hard link to /etc/passwd",
                body: raw([TarWriter.header(name: "pw", size: 0, type: UInt8(ascii: "1"), patch: [157: Array("/etc/passwd".utf8)])]),
                status: 400, message: "hard link"),
            Case(
                label: "hard link inside",
                body: raw([TarWriter.header(name: "again", size: 0, type: UInt8(ascii: "1"), patch: [157: Array("model.joblib".utf8)])]),
                status: 400, message: "hard link"),
            Case(
                label: "character device", body: raw([TarWriter.header(name: "tty", size: 0, type: UInt8(ascii: "3"))]), status: 400,
                message: "device"),
            Case(
                label: "block device", body: raw([TarWriter.header(name: "sda", size: 0, type: UInt8(ascii: "4"))]), status: 400,
                message: "device"),
            Case(
                label: "FIFO", body: raw([TarWriter.header(name: "fifo", size: 0, type: UInt8(ascii: "6"))]), status: 400, message: "FIFO"),
            // Headers with bad lengths and numbers.
            Case(label: "pax path ../", body: raw(paxThen(["path": "../paxescape"], file: "innocent")), status: 400, message: "'..'"),
            Case(label: "pax linkpath absolute", body: raw(paxThen(["linkpath": p], link: "l")), status: 400, message: "symlink 'l'"),
            Case(
                label: "pax record with an absurd length",
                body: raw([paxHeader(Array("99999999999 path=x\n".utf8)), TarWriter.block(TarWriter.header(name: "x", size: 0))]),
                status: 400, message: ""),
            Case(
                label: "pax record of length zero",
                body: raw([paxHeader(Array("0 path=x\n".utf8)), TarWriter.block(TarWriter.header(name: "x", size: 0))]),
                status: 400, message: ""),
            Case(
                label: "GNU long name with ../",
                body: raw([gnuLongName("../gnuescape"), TarWriter.header(name: "x", size: 1), TarWriter.block([1])]),
                status: 400, message: "'..'"),
            Case(
                label: "GNU long name claiming a terabyte",
                body: raw([TarWriter.header(name: "././@LongLink", size: 0, type: UInt8(ascii: "L"), patch: [124: base256(1 << 40)])]),
                status: 400, message: ""),
            Case(
                label: "base-256 size of 2^62", body: raw([TarWriter.header(name: "big", size: 0, patch: [124: base256(1 << 62)])]),
                status: 400, message: ""),
            Case(
                label: "negative base-256 size",
                body: raw([TarWriter.header(name: "neg", size: 0, patch: [124: [0xFF] + [UInt8](repeating: 0xFF, count: 11)])]),
                status: 400, message: ""),
            Case(
                label: "size field of letters",
                body: raw([TarWriter.header(name: "servable.json", size: 0, patch: [124: Array("zzzzzzzzzzz\0".utf8)])]),
                status: 400, message: ""),
            Case(
                label: "wrong header checksum",
                body: TarWriter.header(name: "servable.json", size: 0, patch: [148: Array("0000000\0".utf8)], keepChecksum: true)
                    + TarWriter.end,
                status: 400, message: ""),
            Case(
                label: "truncated body",
                body: Array(raw([TarWriter.header(name: "cut", size: 1 << 20), TarWriter.block([1, 2, 3])]).dropLast(1024)), status: 400,
                message: ""),
            // Not archives.
            Case(
                label: "random bytes", body: (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) }, status: 400,
                message: "not a tar or zip archive"),
            Case(label: "empty body", body: [], status: 400, message: "not a tar or zip archive"),
            Case(
                label: "gzip magic then garbage", body: [0x1F, 0x8B, 0x08, 0x00] + [UInt8](repeating: 0x55, count: 2000), status: 400,
                message: ""),
            Case(label: "only the end blocks", body: TarWriter.end, status: 400, message: ""),
            // Totals.
            Case(
                label: "more entries than the limit", body: upload((0..<250).map { file("f\($0)") }), status: 413,
                message: "more than 200 entries"),
            Case(
                label: "upload over the size limit",
                body: upload([TarEntry(path: "big", kind: .file, contents: [UInt8](repeating: 7, count: 9_000_000))]),
                status: 413, message: "max_upload_bytes"),
            Case(
                label: "servable.json over 1 MiB", body: rawMeta(#"{"x": ""# + String(repeating: "a", count: 1_200_000) + #""}"#),
                status: 413, message: "larger than"),
            // servable.json that must not trap.
            Case(
                label: "deeply nested JSON", body: rawMeta(String(repeating: "[", count: 100_000)), status: 400, message: "not valid JSON"),
            Case(
                label: "cores beyond Int64", body: withMeta { $0.setting(["dlhub", "resources"], to: ["cores": .double(1e30)]) },
                status: 400, message: "cores"),
            Case(
                label: "memory 1e400",
                body: rawMeta(doc.encodedString().replacing(#""dlhub":{"#, with: #""dlhub":{"resources":{"memory":1e400},"#)),
                status: 400, message: ""),
            Case(
                label: "memory \"1e300G\"", body: withMeta { $0.setting(["dlhub", "resources"], to: ["memory": "1e300G"]) }, status: 400,
                message: "memory"),
            Case(
                label: "memory \"-5G\"", body: withMeta { $0.setting(["dlhub", "resources"], to: ["memory": "-5G"]) }, status: 400,
                message: "memory"),
            Case(
                label: "max_batch_size 1e19",
                body: withMeta { $0.setting(["servable", "batching"], to: ["max_batch_size": .double(1e19)]) }, status: 400,
                message: "max_batch_size"),
            Case(
                label: "timeout beyond Double",
                body: rawMeta(doc.encodedString().replacing(#""servable":{"#, with: #""servable":{"timeout":1e999,"#)),
                status: 400, message: ""),
            Case(
                label: "name of 10,000 characters",
                body: withMeta { $0.setting(["dlhub", "name"], to: .string(String(repeating: "n", count: 10_000))) },
                status: 400, message: "dlhub.name"),
            Case(
                label: "name with a right-to-left override", body: withMeta { $0.setting(["dlhub", "name"], to: "iris\u{202E}txt") },
                status: 400,
                message: "dlhub.name"),
            Case(
                label: "owner spoofed in servable.json", body: withMeta { $0.setting(["dlhub", "owner"], to: "bob") }, status: 403,
                message: "only bob"),
            Case(
                label: "installer option as a dependency",
                body: withMeta { $0.setting(["servable", "dependencies", "python"], to: ["--index-url": "http://evil"]) },
                status: 400, message: "not a Python package name"),
            Case(
                label: "URL as a dependency version",
                body: withMeta { $0.setting(["servable", "dependencies", "python"], to: ["numpy": "@ https://evil/x.whl"]) },
                status: 400, message: "not a version"),
            Case(
                label: "module name climbing out",
                body: withMeta { $0.setting(["dlhub", "environment"], to: ["type": "modules", "modules": ["../../etc/x"]]) },
                status: 400, message: "not a module name"),
            Case(
                label: "container image with ..",
                body: withMeta { $0.setting(["dlhub", "environment"], to: ["type": "container", "image": "/a/../../etc/shadow"]) },
                status: 400, message: "absolute path of an Apptainer image"),
        ]
        cases.append(
            Case(label: "model file missing", body: tar([meta()]), status: 400, message: "not in the uploaded directory"))
        return cases
    }

    /// The zip and compressed cases, built with Python's zipfile, tarfile and gzip (the formats'
    /// own reference implementations) into `directory`.
    public static func pythonCases(in directory: String) throws -> [Case] {
        let script = #"""
            import io, json, os, sys, tarfile, zipfile, gzip
            out, canary, doc = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
            meta = json.dumps(doc).encode()
            def z(name, entries):
                with zipfile.ZipFile(os.path.join(out, name), "w", zipfile.ZIP_DEFLATED) as f:
                    f.writestr("servable.json", meta); f.writestr("model.joblib", b"weights")
                    for entry in entries:
                        if entry[0] == "link":
                            info = zipfile.ZipInfo(entry[1]); info.create_system = 3; info.external_attr = 0o120777 << 16
                            f.writestr(info, entry[2])
                        else:
                            f.writestr(entry[0], entry[1])
            import warnings; warnings.simplefilter("ignore")
            z("zip-dotdot", [("../zipescape", b"x")])
            z("zip-absolute", [(canary + "/zipabsolute", b"x")])
            z("zip-symlink-out", [("link", "out", "../../../../../.." + canary)])
            z("zip-symlink-absolute", [("link", "out", canary)])
            z("zip-duplicate", [("dup", b"1"), ("dup", b"2")])
            z("zip-bomb", [("zeros", b"\0" * 40_000_000)])
            z("zip-valid", [])
            def t(name, members, mode="w:gz"):
                with tarfile.open(os.path.join(out, name), mode) as f:
                    for path, data in [("servable.json", meta), ("model.joblib", b"weights")] + members:
                        info = tarfile.TarInfo(path); info.size = len(data); f.addfile(info, io.BytesIO(data))
            t("targz-bomb", [("zeros", b"\0" * 40_000_000)])
            t("targz-valid", [])
            t("tarbz2-dotdot", [("../bz2escape", b"x")], "w:bz2")
            t("tarxz-valid", [], "w:xz")
            open(os.path.join(out, "gzip-of-garbage"), "wb").write(gzip.compress(os.urandom(5000)))
            data = open(os.path.join(out, "zip-valid"), "rb").read()
            open(os.path.join(out, "zip-truncated"), "wb").write(data[: len(data) // 2])
            """#
        let result = try Subprocess.run(TestInstall.workerPython, ["-c", script, directory, canary, doc.encodedString()])
        guard result.status == 0 else { throw TestSetupError("making the zip corpus failed: \(result.stderr)") }
        func read(_ name: String) -> [UInt8] { Array(FileManager.default.contents(atPath: directory + "/" + name) ?? Data()) }
        return [
            Case(label: "zip with ../", body: read("zip-dotdot"), status: 400, message: "'..'"),
            Case(label: "zip with an absolute name", body: read("zip-absolute"), status: 400, message: "absolute path"),
            Case(label: "zip symlink out with ../", body: read("zip-symlink-out"), status: 400, message: "outside the servable"),
            Case(label: "zip absolute symlink", body: read("zip-symlink-absolute"), status: 400, message: "outside the servable"),
            Case(label: "zip with a name twice", body: read("zip-duplicate"), status: 400, message: "appears twice"),
            Case(label: "zip bomb", body: read("zip-bomb"), status: 413, message: "more than 16000000 bytes"),
            Case(label: "zip cut in half", body: read("zip-truncated"), status: 400, message: ""),
            Case(label: "tar.gz bomb", body: read("targz-bomb"), status: 413, message: "more than 16000000 bytes"),
            Case(label: "tar.bz2 with ../", body: read("tarbz2-dotdot"), status: 400, message: "'..'"),
            Case(label: "gzip of garbage", body: read("gzip-of-garbage"), status: 400, message: ""),
            // The formats work when nothing is wrong: zip (what the DLHub SDK uploads), tar.gz, tar.xz.
            Case(label: "a valid zip", body: read("zip-valid"), status: 201, message: ""),
            Case(label: "a valid tar.gz", body: read("targz-valid"), status: 201, message: ""),
            Case(label: "a valid tar.xz", body: read("tarxz-valid"), status: 201, message: ""),
        ]
    }

    static func paxHeader(_ records: [UInt8]) -> [UInt8] {
        TarWriter.header(name: "PaxHeader", size: records.count, type: UInt8(ascii: "x")) + TarWriter.block(records)
    }

    static func paxThen(_ records: [String: String], file: String? = nil, link: String? = nil) -> [[UInt8]] {
        let body = Array(records.map { TarWriter.paxRecord($0.key, $0.value) }.joined().utf8)
        if let link { return [paxHeader(body), TarWriter.header(name: link, size: 0, type: UInt8(ascii: "2"))] }
        return [paxHeader(body), TarWriter.header(name: file ?? "x", size: 1), TarWriter.block([1])]
    }

    static func gnuLongName(_ name: String) -> [UInt8] {
        let bytes = Array(name.utf8) + [0]
        return TarWriter.header(name: "././@LongLink", size: bytes.count, type: UInt8(ascii: "L")) + TarWriter.block(bytes)
    }

    /// A GNU base-256 number in a 12-byte field.
    static func base256(_ value: UInt64) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 12)
        out[0] = 0x80
        for i in 0..<8 { out[11 - i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
        return out
    }
}
