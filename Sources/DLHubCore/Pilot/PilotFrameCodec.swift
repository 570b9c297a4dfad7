import NIOCore

/// Cuts pilot frames off a byte stream and decodes them: the one framing implementation, used by
/// the service's listener and by the pilot.
///
/// The first `handshakeFrames` frames may be at most `handshakeLimit` bytes: until the mutual
/// proof is done a peer is a stranger, and gets a few KiB rather than the full frame limit.
public struct PilotFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = PilotFrame

    let limit: Int
    let handshakeLimit: Int
    var handshakeFramesLeft: Int

    public init(limit: Int = PilotFrame.maximumLength, handshakeFrames: Int = 0, handshakeLimit: Int = 16 * 1024) {
        self.limit = limit
        self.handshakeLimit = handshakeLimit
        self.handshakeFramesLeft = handshakeFrames
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let maximum = handshakeFramesLeft > 0 ? handshakeLimit : limit
        guard let frame = try PilotFrame.next(from: &buffer, limit: maximum) else { return .needMoreData }
        if handshakeFramesLeft > 0 { handshakeFramesLeft -= 1 }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // Whole frames still buffered are delivered; a partial one at the end is dropped.
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}

/// Writes pilot frames with their length prefix.
public struct PilotFrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = PilotFrame

    public init() {}

    public func encode(data: PilotFrame, out: inout ByteBuffer) throws {
        out.writeBytes(data.encoded())
    }
}

extension PilotFrame {
    /// Takes one whole frame off the front of `buffer`; nil (and `buffer` untouched) until one
    /// has arrived. Throws on a length outside 1...`limit` or a body that does not decode.
    public static func next(from buffer: inout ByteBuffer, limit: Int = maximumLength) throws(DLHubError) -> PilotFrame? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        guard length >= 1, Int(length) <= limit else {
            throw DLHubError(.tooLarge, "pilot frame of \(length) bytes refused (the limit here is \(limit) bytes)")
        }
        guard buffer.readableBytes - 4 >= Int(length),
            let type = buffer.getInteger(at: buffer.readerIndex + 4, as: UInt8.self),
            let body = buffer.getBytes(at: buffer.readerIndex + 5, length: Int(length) - 1)
        else { return nil }
        buffer.moveReaderIndex(forwardBy: 4 + Int(length))
        return try decode(type: type, body: body[...])
    }

    /// Every whole frame in `bytes`, for tests and fuzzing; a trailing partial frame is ignored.
    public static func frames(in bytes: [UInt8], limit: Int = maximumLength) throws(DLHubError) -> [PilotFrame] {
        var buffer = ByteBuffer(bytes: bytes)
        var out: [PilotFrame] = []
        while let frame = try next(from: &buffer, limit: limit) { out.append(frame) }
        return out
    }
}
