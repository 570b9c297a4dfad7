/// Bounds on what an upload may unpack to: a publish over any of them is refused, naming it.
public struct ArchiveLimits: Sendable, Hashable {
    /// Entries (files, directories, links) at most.
    public var entries = 10_000
    /// Bytes of file contents after decompression, at most.
    public var bytes: Int64 = 4 << 30
    /// Longest path of an entry, in bytes.
    public var pathBytes = 1024
    /// Deepest nesting of directories.
    public var depth = 32
    /// Largest `servable.json`.
    public var metadataBytes = 1 << 20

    public init() {}
}
