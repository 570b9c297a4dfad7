import DLHubCore
import Foundation
import Hummingbird

/// Routes for the site's admins (`admins` in the configuration, the service account and root):
/// the servable environments the service built, and the registry entries it skipped.
struct AdminRoutes: Sendable {
    let environments: EnvironmentStore
    let catalog: ServableCatalog
    let admins: Set<String>

    func register(on router: Router<APIRequestContext>) {
        router.get("/v1/environments") { _, context in
            try requireAdmin(context)
            let entries = await environments.list()
            return Response.json(["count": .int(Int64(entries.count)), "environments": .array(entries.map(\.json))])
        }
        router.get("/v1/admin/registry") { _, context in
            try requireAdmin(context)
            let problems = catalog.registryProblems
            return Response.json(["skipped": .int(Int64(problems.count)), "problems": .array(problems.map(\.json))])
        }
        router.post("/v1/environments/{id}/rebuild") { _, context in
            try requireAdmin(context)
            let id = try APIRoutes.parameter("id", context)
            _ = try await environments.rebuild(id)
            return Response.json(["id": .string(id), "state": "building"], status: .accepted)
        }
    }

    func requireAdmin(_ context: APIRequestContext) throws(DLHubError) {
        let caller = try context.requireCaller()
        guard admins.contains(caller.login) else {
            throw DLHubError(
                .forbidden, "only the site's admins may manage environments; ask them, or see `dlhub describe` for your servable's")
        }
    }
}
