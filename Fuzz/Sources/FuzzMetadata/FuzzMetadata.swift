import DLHubCore
import FuzzSupport

/// Any JSON document as servable.json, and as an input checked against its declared type:
/// validation answers with issues, never a trap (huge numbers, deep nesting, odd types).
@_cdecl("FuzzMetadata_main")
public func entry(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    runFuzzer(argc, argv) { data, size in fuzz(data, size) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ pointer: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data = pointer ?? (size == 0 ? UnsafePointer(bitPattern: 1) : nil) else { return 0 }
    let bytes = UnsafeBufferPointer(start: data, count: size)
    guard let doc = try? JSONValue.parse(bytes) else { return 0 }
    if let metadata = try? ServableMetadata.validate(doc, files: ["model.joblib", "model.pkl", "a/b.py"]) {
        _ = metadata.input.check(doc, at: "input")
        _ = metadata.output.check(doc["dlhub"] ?? .null, at: "output")
        _ = metadata.published(owner: "alice", version: 1, identifier: nil, date: "2026-01-01T00:00:00Z")
        _ = ContentDigest.compute(metadata: doc, files: [])
    }
    _ = ServableMetadata.parseMemory(doc)
    if let text = doc.stringValue { _ = try? ServableReference(parsing: text) }
    return 0
}
