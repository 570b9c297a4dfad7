import DLHubCore
import Foundation

/// Python environments the tests make for themselves (to train a model with a given library
/// version and to compute reference answers in-process), built with the same `uv` as the service.
public enum TestEnvironments {
    public static let root = "/var/tmp/dlhub-test-envs"

    /// The `uv` beside the default worker Python (`scripts/python-env` installs it).
    public static var uv: String { (TestInstall.workerPython as NSString).deletingLastPathComponent + "/uv" }

    /// The interpreter of an environment with exactly `packages` (name -> version), built once.
    public static func python(_ packages: [String: String]) throws -> String {
        let key = packages.sorted { $0.key < $1.key }.map { "\($0.key)==\($0.value)" }.joined(separator: " ")
        let dir = root + "/" + ContentDigest.sha256Hex(Array(key.utf8)).prefix(16)
        let python = dir + "/bin/python"
        if FileManager.default.fileExists(atPath: dir + "/.complete") { return python }
        try? FileManager.default.removeItem(atPath: dir)
        var env = ["UV_CACHE_DIR": root + "/.cache", "PATH": "/usr/bin:/bin", "HOME": "/root", "UV_PYTHON_DOWNLOADS": "never"]
        for (k, v) in NetworkEnvironment.passedThrough(ProcessInfo.processInfo.environment) { env[k] = v }
        for args in [
            ["venv", "--quiet", "--python", "/usr/bin/python3", dir],
            ["pip", "install", "--quiet", "--python", python, "--only-binary", ":all:"]
                + packages.sorted { $0.key < $1.key }.map {
                    "\($0.key)==\($0.value)"
                },
        ] {
            let result = try Subprocess.run(uv, args, environment: env)
            guard result.status == 0 else { throw TestSetupError("uv \(args.prefix(2).joined(separator: " ")) failed: \(result.stderr)") }
        }
        _ = FileManager.default.createFile(atPath: dir + "/.complete", contents: nil)
        _ = try Subprocess.run("/bin/chmod", ["-R", "a+rX", root])
        return python
    }

    /// Runs a Python snippet with an interpreter and returns its standard output as JSON.
    public static func evaluate(_ python: String, _ script: String, _ arguments: [String] = []) throws -> JSONValue {
        let result = try Subprocess.run(python, ["-c", script] + arguments)
        guard result.status == 0 else { throw TestSetupError("python failed: \(result.stderr)") }
        return try JSONValue.parse(result.stdout)
    }
}

/// A package index on loopback serving tiny wheels made at test time, optionally slow, so
/// environment builds can be watched (and fail, or be attacked) without the network.
public final class LocalPackageIndex: @unchecked Sendable {
    public let process: Process
    public let url: String
    public let directory: TemporaryDirectory

    /// A wheel to serve: its distribution name, version, and files (path inside the wheel ->
    /// contents). The wheel's METADATA, WHEEL and RECORD are added.
    public struct Wheel: Sendable {
        public var name: String
        public var version: String
        public var files: [String: String]
        public init(name: String, version: String, files: [String: String]) {
            self.name = name
            self.version = version
            self.files = files
        }

        /// `dlhub-test-greeting` 1.0: module `dlhub_test_greeting`, `greet(x)` returns "hello, x".
        public static let greeting = Wheel(
            name: "dlhub-test-greeting", version: "1.0",
            files: ["dlhub_test_greeting.py": "def greet(x):\n    return 'hello, ' + str(x)\n"])
    }

    /// Serves `wheels`, answering each index page after `delay` seconds.
    public init(delay: Double, wheels: [Wheel] = [.greeting]) throws {
        directory = try TemporaryDirectory("dlhub-index")
        let packages: JSONValue = .array(
            wheels.map { ["name": .string($0.name), "version": .string($0.version), "files": .object($0.files.mapValues { .string($0) })] })
        let script = """
            import hashlib, http.server, io, json, os, sys, time, zipfile, base64
            root, delay, packages = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
            def digest(data):
                return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            served = {}  # project -> (wheel file name, bytes, sha256)
            for p in packages:
                dist = p["name"].replace("-", "_")
                version = p["version"]
                info = f"{dist}-{version}.dist-info"
                files = {k: v.encode() for k, v in p["files"].items()}
                files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\\nName: {p['name']}\\nVersion: {version}\\n".encode()
                files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\\nGenerator: dlhub-tests\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
                record = "".join(f"{k},{digest(d)},{len(d)}\\n" for k, d in files.items()) + f"{info}/RECORD,,\\n"
                files[f"{info}/RECORD"] = record.encode()
                wheel = f"{dist}-{version}-py3-none-any.whl"
                buffer = io.BytesIO()
                with zipfile.ZipFile(buffer, "w") as z:
                    for k, d in files.items():
                        z.writestr(k, d)
                data = buffer.getvalue()
                served[p["name"]] = (wheel, data, hashlib.sha256(data).hexdigest())
            class Handler(http.server.BaseHTTPRequestHandler):
                def log_message(self, *args):
                    pass
                def do_HEAD(self):
                    self.do_GET(head=True)
                def do_GET(self, head=False):
                    path = self.path.rstrip("/")
                    body = None
                    for project, (wheel, data, sha) in served.items():
                        if path == "/simple/" + project:
                            time.sleep(delay)
                            body = f'<html><body><a href="/files/{wheel}#sha256={sha}">{wheel}</a></body></html>'.encode()
                            kind = "text/html"
                        elif self.path == "/files/" + wheel:
                            body, kind = data, "application/octet-stream"
                    if body is None:
                        self.send_response(404); self.end_headers(); return
                    self.send_response(200)
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if not head:
                        self.wfile.write(body)
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            print(server.server_address[1], flush=True)
            server.serve_forever()
            """
        let server = Process()
        server.executableURL = URL(fileURLWithPath: TestInstall.workerPython)
        server.arguments = ["-c", script, directory.path, String(delay), String(decoding: packages.encoded(), as: UTF8.self)]
        let out = Pipe()
        server.standardOutput = out
        server.standardError = FileHandle.nullDevice
        try server.run()
        var line = Data()
        while !line.contains(0x0A) {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        guard let port = Int(String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) else {
            server.terminate()
            throw TestSetupError("the local package index did not start")
        }
        process = server
        url = "http://127.0.0.1:\(port)/simple"
    }

    /// Stops the server. (Not `waitUntilExit`: at the end of a test run it can spin for ever.)
    public func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    deinit { stop() }
}
