import DLHubCore
import PropertyBased
import Testing

/// The pilot port's handshake table: bounded whatever arrives, and a flood of silent
/// connections only ever pushes out other silent connections, oldest first.
@Suite struct StrangerTableTests {
    @Test func theTableStaysBoundedAndPushesOutOnlyTheOldestSilentStrangers() async {
        // Each step: 0-59 a new connection, 60-79 the oldest live one says hello, 80-99 one leaves.
        await propertyCheck(count: 300, input: Gen.int(in: 0...99).array(of: 1...600), Gen.int(in: 1...8)) { steps, limit in
            var table = StrangerTable<Int>(silentLimit: limit, provingLimit: limit)
            var silent: [Int] = []  // arrival order, as a model
            var proving: Set<Int> = []
            var next = 0
            for step in steps {
                if step < 60 {
                    next += 1
                    let evicted = table.arrive(next)
                    let expected = silent.count >= limit ? Array(silent.prefix(silent.count - limit + 1)) : []
                    #expect(evicted == expected, "pushed out \(evicted), expected the oldest silent \(expected)")
                    silent.removeFirst(expected.count)
                    silent.append(next)
                } else if step < 80, let first = silent.first {
                    let ok = table.heardHello(first)
                    silent.removeFirst()
                    #expect(ok == (proving.count < limit))
                    if ok { proving.insert(first) }
                } else if let gone = (silent + proving.sorted()).randomElement() {
                    table.leave(gone)
                    silent.removeAll { $0 == gone }
                    proving.remove(gone)
                }
                #expect(table.silentCount <= limit && table.provingCount <= limit)
                #expect(table.silentCount == silent.count && table.provingCount == proving.count)
            }
            for id in proving { #expect(table.contains(id)) }
        }
    }

    @Test func aPilotThatSaysHelloAtOnceGetsInDuringAFlood() {
        var table = StrangerTable<Int>(silentLimit: 64, provingLimit: 64)
        for id in 0..<10_000 { _ = table.arrive(id) }
        _ = table.arrive(-1)
        let admitted = table.heardHello(-1)
        #expect(admitted)
        for id in 10_000..<20_000 { _ = table.arrive(id) }
        #expect(table.contains(-1), "a stranger proving itself was pushed out by silent ones")
        #expect(table.silentCount == 64)
    }
}
