/// Finds where JSON values begin and end in a text without building them, checking the syntax as
/// strictly as `JSONValue.parse` does. Used where bytes are only forwarded: the pilot hands each
/// output a worker wrote to the service as it is, after checking it is one well-formed JSON
/// value, instead of parsing it into a tree and writing it out again.
public struct JSONScanner {
    public let bytes: [UInt8]
    public private(set) var position = 0
    var depth = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// The bytes of a well-formed value at `range` without the whitespace between its tokens
    /// (a line-based protocol can carry it on one line), otherwise as written.
    public static func minified(_ bytes: [UInt8], _ range: Range<Int>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(range.count)
        var inString = false
        var escaped = false
        for i in range {
            let b = bytes[i]
            if inString {
                if escaped {
                    escaped = false
                } else if b == UInt8(ascii: "\\") {
                    escaped = true
                } else if b == UInt8(ascii: "\"") {
                    inString = false
                }
                out.append(b)
                continue
            }
            switch b {
            case 0x20, 0x0A, 0x0D, 0x09: continue
            case UInt8(ascii: "\""): inString = true
            default: break
            }
            out.append(b)
        }
        return out
    }

    /// Continues from `offset` (the start of a value found earlier).
    public mutating func skipTo(_ offset: Int) { position = offset }

    /// The byte range of the JSON value `bytes` holds, when it holds exactly one (with optional
    /// whitespace around it).
    public static func wholeValue(_ bytes: [UInt8]) -> Range<Int>? {
        var s = JSONScanner(bytes)
        s.skipSpace()
        guard let range = s.value() else { return nil }
        s.skipSpace()
        return s.position == bytes.count ? range : nil
    }

    /// The members of the object at the current position: each key (unescaped, as bytes) and the
    /// byte range of its value. Nil when it is not a well-formed object.
    public mutating func objectMembers() -> [(key: [UInt8], value: Range<Int>)]? {
        skipSpace()
        guard position < bytes.count, bytes[position] == UInt8(ascii: "{") else { return nil }
        // The object is a level of nesting, as in `value()` (the parser counts it too).
        depth += 1
        defer { depth -= 1 }
        guard depth < 512 else { return nil }
        var members: [(key: [UInt8], value: Range<Int>)] = []
        var keysOK = true
        let bytes = self.bytes
        guard
            walkObject({ key, value in
                let raw = bytes[(key.lowerBound + 1)..<(key.upperBound - 1)]
                if !raw.contains(UInt8(ascii: "\\")) {
                    members.append((Array(raw), value))
                } else if case .string(let s)? = try? JSONValue.parse(bytes[key]) {
                    members.append((Array(s.utf8), value))
                } else {
                    keysOK = false
                }
            }), keysOK
        else { return nil }
        return members
    }

    /// The byte ranges of the elements of the array at `range` (which must hold one array).
    public static func arrayElements(_ bytes: [UInt8], in range: Range<Int>) -> [Range<Int>]? {
        var s = JSONScanner(bytes)
        s.position = range.lowerBound
        guard s.position < range.upperBound, bytes[s.position] == UInt8(ascii: "[") else { return nil }
        var elements: [Range<Int>] = []
        guard s.walkArray({ elements.append($0) }), s.position == range.upperBound else { return nil }
        return elements
    }

    /// Moves over one value; its byte range, or nil when it is not well-formed JSON.
    public mutating func value() -> Range<Int>? {
        let start = position
        guard position < bytes.count else { return nil }
        switch bytes[position] {
        case UInt8(ascii: "{"):
            depth += 1
            defer { depth -= 1 }
            guard depth < 512, walkObject({ _, _ in }) else { return nil }
        case UInt8(ascii: "["):
            depth += 1
            defer { depth -= 1 }
            guard depth < 512, walkArray({ _ in }) else { return nil }
        case UInt8(ascii: "\""):
            guard skipString() else { return nil }
        case UInt8(ascii: "t"):
            guard literal("true") else { return nil }
        case UInt8(ascii: "f"):
            guard literal("false") else { return nil }
        case UInt8(ascii: "n"):
            guard literal("null") else { return nil }
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            guard number() else { return nil }
        default:
            return nil
        }
        return start..<position
    }

    public mutating func skipSpace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x0A, 0x0D, 0x09: position += 1
            default: return
            }
        }
    }

    /// Moves over the object at `position` (at its `{`), giving each key's range (quotes
    /// included) and its value's range; false when it is not well-formed.
    private mutating func walkObject(_ member: (Range<Int>, Range<Int>) -> Void) -> Bool {
        // The keys, for the parser's check that no two are the same text in different Unicode
        // forms, compared only when one is not plain ASCII (two ASCII keys never are).
        var keys: [Range<Int>] = []
        var hasUnusual = false
        let walked = walkList(close: UInt8(ascii: "}")) { s in
            let key = s.position
            guard s.position < s.bytes.count, s.bytes[s.position] == UInt8(ascii: "\""), s.skipString() else { return false }
            let keyRange = key..<s.position
            keys.append(keyRange)
            if !hasUnusual, s.bytes[keyRange].contains(where: { $0 >= 0x80 || $0 == UInt8(ascii: "\\") }) { hasUnusual = true }
            s.skipSpace()
            guard s.position < s.bytes.count, s.bytes[s.position] == UInt8(ascii: ":") else { return false }
            s.position += 1
            s.skipSpace()
            guard let value = s.value() else { return false }
            member(keyRange, value)
            return true
        }
        guard walked else { return false }
        guard hasUnusual else { return true }
        var seen: [String: ArraySlice<UInt8>] = [:]
        for range in keys {
            guard case .string(let key)? = try? JSONValue.parse(bytes[range]) else { return false }
            let spelled = ArraySlice(key.utf8)
            if let earlier = seen[key], earlier != spelled { return false }
            seen[key] = spelled
        }
        return true
    }

    /// Moves over the array at `position` (at its `[`), giving each element's range.
    private mutating func walkArray(_ element: (Range<Int>) -> Void) -> Bool {
        walkList(close: UInt8(ascii: "]")) { s in
            guard let range = s.value() else { return false }
            element(range)
            return true
        }
    }

    /// An object's or array's entries between the opening byte at `position` and `close`,
    /// separated by commas, each read by `entry`.
    private mutating func walkList(close: UInt8, _ entry: (inout JSONScanner) -> Bool) -> Bool {
        position += 1
        skipSpace()
        if position < bytes.count, bytes[position] == close {
            position += 1
            return true
        }
        while true {
            skipSpace()
            guard entry(&self) else { return false }
            skipSpace()
            guard position < bytes.count else { return false }
            if bytes[position] == UInt8(ascii: ",") {
                position += 1
                continue
            }
            guard bytes[position] == close else { return false }
            position += 1
            return true
        }
    }

    /// Moves over a string, checking its escapes (as `JSONValue.parse` does: no control
    /// characters, known escapes, `\u` with four hex digits and surrogates in pairs).
    private mutating func skipString() -> Bool {
        position += 1
        while position < bytes.count {
            let b = bytes[position]
            if b == UInt8(ascii: "\"") {
                position += 1
                return true
            }
            if b < 0x20 { return false }
            if b >= 0x80 {
                guard let next = Self.utf8Sequence(bytes, at: position) else { return false }
                position = next
                continue
            }
            if b == UInt8(ascii: "\\") {
                position += 1
                guard position < bytes.count else { return false }
                switch bytes[position] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"), UInt8(ascii: "n"),
                    UInt8(ascii: "r"), UInt8(ascii: "t"):
                    break
                case UInt8(ascii: "u"):
                    guard let scalar = hex4() else { return false }
                    if (0xD800..<0xDC00).contains(scalar) {
                        guard position + 2 < bytes.count, bytes[position + 1] == 92, bytes[position + 2] == UInt8(ascii: "u") else {
                            return false
                        }
                        position += 2
                        guard let low = hex4(), (0xDC00..<0xE000).contains(low) else { return false }
                    } else if (0xDC00..<0xE000).contains(scalar) {
                        return false
                    }
                default:
                    return false
                }
            }
            position += 1
        }
        return false
    }

    /// The end of the well-formed UTF-8 sequence starting at `offset` (a byte of 0x80 or more):
    /// no overlong forms, no surrogates, nothing past U+10FFFF; nil when it is not one.
    static func utf8Sequence(_ bytes: [UInt8], at offset: Int) -> Int? {
        let b0 = bytes[offset]
        let count: Int
        var low: UInt8 = 0x80
        var high: UInt8 = 0xBF
        switch b0 {
        case 0xC2...0xDF: count = 2
        case 0xE0: (count, low) = (3, 0xA0)
        case 0xE1...0xEC, 0xEE...0xEF: count = 3
        case 0xED: (count, high) = (3, 0x9F)
        case 0xF0: (count, low) = (4, 0x90)
        case 0xF1...0xF3: count = 4
        case 0xF4: (count, high) = (4, 0x8F)
        default: return nil
        }
        guard offset + count <= bytes.count else { return nil }
        for k in 1..<count {
            let b = bytes[offset + k]
            guard b >= (k == 1 ? low : 0x80), b <= (k == 1 ? high : 0xBF) else { return nil }
        }
        return offset + count
    }

    private mutating func hex4() -> UInt32? {
        guard let v = Self.hex4(bytes, after: position) else { return nil }
        position += 4
        return v
    }

    /// The four hex digits after `offset` (the `u` of a `\u` escape), as a number.
    static func hex4(_ bytes: [UInt8], after offset: Int) -> UInt32? {
        guard offset + 4 < bytes.count else { return nil }
        var v: UInt32 = 0
        for k in 1...4 {
            let c = bytes[offset + k]
            let d: UInt32
            switch c {
            case 48...57: d = UInt32(c - 48)
            case 65...70: d = UInt32(c - 55)
            case 97...102: d = UInt32(c - 87)
            default: return nil
            }
            v = v << 4 | d
        }
        return v
    }

    private mutating func literal(_ word: StaticString) -> Bool {
        let n = word.utf8CodeUnitCount
        guard position + n <= bytes.count else { return false }
        let matches = word.withUTF8Buffer { w in (0..<n).allSatisfy { bytes[position + $0] == w[$0] } }
        guard matches else { return false }
        position += n
        return true
    }

    private mutating func number() -> Bool {
        func digits() -> Bool {
            guard position < bytes.count, (48...57).contains(bytes[position]) else { return false }
            while position < bytes.count, (48...57).contains(bytes[position]) { position += 1 }
            return true
        }
        if bytes[position] == UInt8(ascii: "-") { position += 1 }
        // No leading zeros (RFC 8259), as the parser.
        if position + 1 < bytes.count, bytes[position] == UInt8(ascii: "0"), (48...57).contains(bytes[position + 1]) { return false }
        guard digits() else { return false }
        if position < bytes.count, bytes[position] == UInt8(ascii: ".") {
            position += 1
            guard digits() else { return false }
        }
        if position < bytes.count, bytes[position] == UInt8(ascii: "e") || bytes[position] == UInt8(ascii: "E") {
            position += 1
            if position < bytes.count, bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-") { position += 1 }
            guard digits() else { return false }
        }
        return true
    }
}
