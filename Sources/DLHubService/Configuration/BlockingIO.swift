import DLHubCore
import Dispatch

/// Runs blocking work (filesystem writes on the shared filesystem, munge round trips) on a
/// dispatch queue, so it never occupies a thread of the Swift concurrency pool.
enum BlockingIO {
    static let queue = DispatchQueue(label: "dlhub.blocking-io", attributes: .concurrent)

    static func run<T: Sendable>(_ body: @escaping @Sendable () throws(DLHubError) -> T) async throws(DLHubError) -> T {
        let result: Result<T, DLHubError> = await withCheckedContinuation { continuation in
            queue.async {
                do throws(DLHubError) { continuation.resume(returning: .success(try body())) } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }
}
