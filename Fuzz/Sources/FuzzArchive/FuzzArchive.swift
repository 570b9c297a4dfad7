import DLHubArchive
import DLHubCore
import FuzzSupport
import Glibc

/// Any bytes as an upload: unpacked into a fresh directory or refused, never a trap, and nothing
/// is ever created outside that directory.
@_cdecl("FuzzArchive_main")
public func entry(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    runFuzzer(argc, argv) { data, size in fuzz(data, size) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ pointer: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data = pointer ?? (size == 0 ? UnsafePointer(bitPattern: 1) : nil) else { return 0 }
    var template = Array("/tmp/dlhub-fuzz-archive-XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else { return 0 }
    let root = String(cString: made)
    defer { remove(root) }
    let upload = root + "/upload"
    let staging = root + "/staging"
    mkdir(staging, 0o755)
    let fd = open(upload, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0 else { return 0 }
    _ = write(fd, data, size)
    close(fd)
    var limits = ArchiveLimits()
    limits.entries = 200
    limits.bytes = 8 << 20
    _ = try? ArchiveExtractor.unpack(archive: upload, into: staging, limits: limits)
    // Only "upload" and "staging" may exist beside each other.
    precondition(entries(root).sorted() == ["staging", "upload"], "something was created outside the staging directory")
    return 0
}

func entries(_ path: String) -> [String] {
    guard let dir = opendir(path) else { return [] }
    defer { closedir(dir) }
    var out: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        if name != "." && name != ".." { out.append(name) }
    }
    return out
}

func remove(_ path: String) {
    var info = stat()
    guard lstat(path, &info) == 0 else { return }
    if info.st_mode & S_IFMT == S_IFDIR {
        for name in entries(path) { remove(path + "/" + name) }
        rmdir(path)
    } else {
        unlink(path)
    }
}
