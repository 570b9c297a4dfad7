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

/// A package index on loopback serving one tiny wheel made at test time, optionally slow, so
/// environment builds can be watched (and fail) without the network.
public final class LocalPackageIndex: @unchecked Sendable {
    public let process: Process
    public let url: String
    public let directory: TemporaryDirectory

    /// Serves `dlhub-test-greeting` 1.0 (module `dlhub_test_greeting`, `greet(x)` returns
    /// "hello, x"), answering each index page after `delay` seconds.
    public init(delay: Double) throws {
        directory = try TemporaryDirectory("dlhub-index")
        let script = """
            import hashlib, http.server, io, os, sys, time, zipfile, base64
            root, delay = sys.argv[1], float(sys.argv[2])
            name, version = "dlhub_test_greeting", "1.0"
            files = {
                name + ".py": b"def greet(x):\\n    return 'hello, ' + str(x)\\n",
                f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\\nName: dlhub-test-greeting\\nVersion: {version}\\n".encode(),
                f"{name}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\\nGenerator: dlhub-tests\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
            }
            def digest(data):
                return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record = "".join(f"{p},{digest(d)},{len(d)}\\n" for p, d in files.items()) + f"{name}-{version}.dist-info/RECORD,,\\n"
            files[f"{name}-{version}.dist-info/RECORD"] = record.encode()
            wheel = f"{name}-{version}-py3-none-any.whl"
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w") as z:
                for p, d in files.items():
                    z.writestr(p, d)
            data = buffer.getvalue()
            sha = hashlib.sha256(data).hexdigest()
            class Handler(http.server.BaseHTTPRequestHandler):
                def log_message(self, *args):
                    pass
                def do_HEAD(self):
                    self.do_GET(head=True)
                def do_GET(self, head=False):
                    if self.path.rstrip("/") == "/simple/dlhub-test-greeting":
                        time.sleep(delay)
                        body = f'<html><body><a href="/files/{wheel}#sha256={sha}">{wheel}</a></body></html>'.encode()
                        kind = "text/html"
                    elif self.path == "/files/" + wheel:
                        body, kind = data, "application/octet-stream"
                    else:
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
        server.arguments = ["-c", script, directory.path, String(delay)]
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
