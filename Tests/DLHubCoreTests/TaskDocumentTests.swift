import DLHubCore
import Testing

/// The task document is read back exactly as it was written (service -> clients).
@Suite struct TaskDocumentTests {
    @Test func writtenAndReadBackUnchanged() throws {
        var doc = TaskDocument(
            id: "t1", servable: "alice/iris@2", digest: "sha256:x", status: "completed_with_errors", created: 10, items: 2, remaining: 0,
            finished: 12.5)
        doc.outputs = [[0, 1], .null]
        doc.errors = [nil, "ValueError: bad"]
        let read = TaskDocument(json: try JSONValue.parse(doc.json.encoded()))
        #expect(read == doc)
        #expect(doc.json["seconds"] == 2.5)
        #expect(read.isFinished)
    }

    @Test func waitingForSaysWhatInWords() throws {
        var doc = TaskDocument(id: "t2", servable: "s", digest: "d", status: "queued", created: 1, items: 1, remaining: 1)
        doc.waitingFor = WaitingFor(pool: "cpu", jobID: 42, state: "PENDING", reason: "Resources", waitedSeconds: 3)
        doc.location = "/v1/tasks/t2"
        let read = TaskDocument(json: try JSONValue.parse(doc.json.encoded()))
        #expect(read == doc)
        #expect(!read.isFinished)
        #expect(read.waitingFor?.describe(status: read.status) == "pilot job 42 is PENDING (Resources) in pool cpu")
        let building = WaitingFor.building(id: "e1", packages: ["numpy==2.0"], seconds: 5)
        #expect(WaitingFor(json: building.json) == building)
        #expect(building.describe(status: "queued") == "building the servable's Python environment (numpy==2.0)")
    }
}
