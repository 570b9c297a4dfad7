import DLHubCore
import FuzzSupport

/// Any bytes on the pilot port: the decoder returns frames or an error, never traps, and what it
/// decodes encodes back to frames that decode the same.
@_cdecl("FuzzPilotFrames_main")
public func entry(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    runFuzzer(argc, argv) { data, size in fuzz(data, size) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ pointer: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data = pointer ?? (size == 0 ? UnsafePointer(bitPattern: 1) : nil) else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let frames = try? PilotFrame.frames(in: bytes, limit: 1 << 20) else { return 0 }
    for frame in frames {
        _ = frame.problemForFuzzing
        let again = try? PilotFrame.frames(in: frame.encoded())
        precondition(again?.count == 1, "a decoded frame did not encode to one frame")
    }
    return 0
}

extension PilotFrame {
    /// Exercises what the service does with a hello before trusting it.
    var problemForFuzzing: String? {
        if case .hello(let h) = self { return h.problem(now: 1_800_000_000) }
        return nil
    }
}
