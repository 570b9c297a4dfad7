import Foundation
import Glibc
import PropertyBased
import Testing

@testable import DLHubPilot

/// How the pilot counts a worker's processes (`ProcessWatch`): the tree below the worker's first
/// process, whatever names the processes gave themselves.
@Suite struct ProcessTreeTests {
    /// A process names itself: spaces and parentheses in its name do not move the fields.
    @Test func theParentIsReadAfterTheLastParenthesisOfTheName() {
        #expect(ProcessTree.entry(fromStat: Array("42 (python3) S 7 42 42 0 -1".utf8))?.parent == 7)
        #expect(ProcessTree.entry(fromStat: Array("42 (a) b) R 9 1 1".utf8))?.parent == 9)
        #expect(ProcessTree.entry(fromStat: Array("42 (x ) 1 2 3) S 11 0".utf8))?.parent == 11)
        #expect(ProcessTree.entry(fromStat: Array("42 (no end S 7".utf8)) == nil)
        #expect(ProcessTree.entry(fromStat: Array("".utf8)) == nil)
        // num_threads is the 20th field; a line too short for it counts one thread.
        let full = "7 (py thon) S 1 7 7 0 -1 4194560 100 0 0 0 5 1 0 0 20 0 37 0 123 4096 10 0"
        #expect(ProcessTree.entry(fromStat: Array(full.utf8))?.threads == 37)
        #expect(ProcessTree.entry(fromStat: Array("42 (python3) S 7 42".utf8))?.threads == 1)
    }

    /// Generated process tables (a forest of parent links, with cycles a racy read could show):
    /// each root's tree holds exactly the processes whose chain of parents reaches it.
    @Test func aTreeHoldsExactlyWhatDescendsFromItsRoot() async {
        await propertyCheck(count: 1000, input: Gen.int(in: 1...60).array(of: 1...120)) { links in
            var parents: [pid_t: pid_t] = [:]
            for (i, parent) in links.enumerated() { parents[pid_t(i + 1)] = pid_t(parent) }
            let roots = Set(stride(from: 1, through: links.count, by: 7).map { pid_t($0) })
            let trees = ProcessTree.trees(of: roots, parents: parents)
            for root in roots {
                var expected: Set<pid_t> = []
                for pid in parents.keys {
                    var at = pid
                    var steps = 0
                    while steps <= parents.count {
                        if at == root {
                            expected.insert(pid)
                            break
                        }
                        guard let up = parents[at], up != at else { break }
                        at = up
                        steps += 1
                    }
                }
                let got = trees[root] ?? []
                #expect(Set(got) == expected, "root \(root) in \(links)")
                #expect(got.count == Set(got).count, "no process counted twice")
            }
        }
    }

    /// On the live process table: this test process's tree holds a child it started.
    @Test func theLiveTableShowsAChild() throws {
        let child = try Process.run(URL(fileURLWithPath: "/bin/sleep"), arguments: ["5"])
        defer { child.terminate() }
        let me = getpid()
        let tree = ProcessTree.trees(of: [me], parents: ProcessTree.readTable().mapValues(\.parent))[me] ?? []
        #expect(tree.contains(child.processIdentifier))
        #expect(tree.first == me)
    }
}
