import DLHubCore
import FuzzSupport

/// Any bytes as JSON (request bodies, servable.json, frames' JSON): parsed or refused, never a
/// trap; what parses encodes to JSON that parses again; the scanner (which checks outputs the
/// pilot forwards without parsing) accepts exactly what the parser accepts.
@_cdecl("FuzzJSON_main")
public func entry(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    runFuzzer(argc, argv) { data, size in fuzz(data, size) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ pointer: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data = pointer ?? (size == 0 ? UnsafePointer(bitPattern: 1) : nil) else { return 0 }
    let bytes = UnsafeBufferPointer(start: data, count: size)
    let value = try? JSONValue.parse(bytes)
    precondition((JSONScanner.wholeValue(Array(bytes)) != nil) == (value != nil), "the scanner and the parser disagree")
    guard let value else { return 0 }
    let encoded = value.encoded()
    precondition((try? JSONValue.parse(encoded)) != nil, "encoded JSON did not parse again")
    _ = value.encoded(pretty: true)
    return 0
}
