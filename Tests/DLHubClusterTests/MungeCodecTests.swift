import DLHubCluster
import DLHubTesting
import Foundation
import Testing

/// libmunge against the real munged, with credentials made by other Unix users.
@Suite struct MungeCodecTests {
    let codec = MungeCodec()

    init() throws { try TestUsers.require() }

    @Test func credentialFromAnotherUserDecodesToThatUser() throws {
        let credential = try TestUsers.munge(as: TestUsers.alice)
        let identity = try codec.decode(credential)
        #expect(identity.uid == TestUsers.uid(TestUsers.alice))
        #expect(identity.uid != 0)
    }

    @Test func ownCredentialRoundTripsWithPayload() throws {
        let credential = try codec.encode(payload: Array("hello".utf8))
        let identity = try codec.decode(credential)
        #expect(identity.uid == getuid())
        #expect(identity.payload == Array("hello".utf8))
    }

    @Test func replayedAndGarbageCredentialsAreRefusedDistinctly() throws {
        let credential = try TestUsers.munge(as: TestUsers.bob)
        _ = try codec.decode(credential)
        #expect(throws: MungeError.self) { try codec.decode(credential) }
        do { _ = try codec.decode(credential) } catch { #expect(error.kind == .replayed) }
        do { _ = try codec.decode("MUNGE:garbage:") } catch { #expect(error.kind == .invalid) }
        do { _ = try codec.decode("not a credential at all") } catch { #expect(error.kind == .invalid) }
    }

    @Test func expiredCredentialIsItsOwnError() async throws {
        let credential = try codec.encode(ttl: 1)
        try await Task.sleep(for: .seconds(2.5))
        do { _ = try codec.decode(credential); Issue.record("decoded an expired credential") } catch {
            #expect(error.kind == .expired)
        }
    }

    @Test func unreachableDaemonIsItsOwnError() throws {
        let offline = MungeCodec(socketPath: "/nonexistent/munge.socket")
        do { _ = try offline.encode(); Issue.record("encoded without munged") } catch {
            #expect(error.kind == .daemonUnreachable)
        }
    }
}
