import DLHubCore
import DLHubService

/// A `MungeVerifying` double: credentials are `test:<login>`, for unit tests of code that sits
/// behind authentication. The real path (munged, libmunge) is covered by the service tests.
public struct StaticMungeVerifier: MungeVerifying {
    public var callers: [String: Caller]
    /// The service the credentials are made for (their payload).
    public var serviceID: String

    public init(callers: [Caller], serviceID: String = "") {
        self.callers = Dictionary(uniqueKeysWithValues: callers.map { ($0.login, $0) })
        self.serviceID = serviceID
    }

    public func currentCaller(uid: UInt32, gid: UInt32) async -> Caller? { callers.values.first { $0.uid == uid } }

    public func verify(credential: String) async throws(DLHubError) -> (caller: Caller, payload: [UInt8]) {
        guard credential.hasPrefix("test:"), let caller = callers[String(credential.dropFirst(5))] else {
            throw DLHubError(.unauthenticated, "the munge credential was refused: test double does not know '\(credential)'")
        }
        return (caller, Array(("dlhub-service:" + serviceID).utf8))
    }
}
