import DLHubCore
import Foundation
import Logging

/// One JSON object per line on standard error (`dlhubd --log-format json`), for log shippers:
/// `{"ts": "...", "level": "info", "label": "dlhubd", "message": "...", <metadata>...}`.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level = .info
    let label: String

    public init(label: String, level: Logger.Level = .info) {
        self.label = label
        logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        FileHandle.standardError.write(Data(Self.line(event, label: label, base: metadata, provider: metadataProvider).utf8))
    }

    /// The line for one event (its metadata over the handler's; the fixed keys win).
    static func line(_ event: LogEvent, label: String, base: Logger.Metadata, provider: Logger.MetadataProvider?) -> String {
        var fields: [String: JSONValue] = [:]
        var merged = base
        if let provided = provider?.get() { merged.merge(provided) { _, new in new } }
        if let metadata = event.metadata { merged.merge(metadata) { _, new in new } }
        for (key, value) in merged { fields[key] = json(value) }
        fields["ts"] = .string(timestamp.string(from: Date()))
        fields["level"] = .string(event.level.rawValue)
        fields["label"] = .string(label)
        fields["message"] = .string(event.message.description)
        if let error = event.error { fields["error"] = .string("\(error)") }
        return JSONValue.object(fields).encodedString() + "\n"
    }

    static func json(_ value: Logger.Metadata.Value) -> JSONValue {
        switch value {
        case .string(let s): return .string(s)
        case .stringConvertible(let c): return .string(c.description)
        case .array(let items): return .array(items.map(json))
        case .dictionary(let d): return .object(d.mapValues(json))
        @unknown default: return .string("\(value)")
        }
    }

    nonisolated(unsafe) static let timestamp: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }()
}
