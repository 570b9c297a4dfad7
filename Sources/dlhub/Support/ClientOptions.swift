import ArgumentParser

/// Options every subcommand that talks to the service shares.
struct ClientOptions: ParsableArguments {
    @Option(name: .long, help: "Service URL, e.g. http://login1:8750. Also DLHUB_URL.")
    var url: String?

    @Option(name: .long, help: "Registry root, to find the service from its service.json. Also DLHUB_REGISTRY.")
    var registry: String?

    @Flag(name: .long, help: "Print JSON instead of a table, for scripts.")
    var json = false

    func client() throws -> ServiceClient {
        try ServiceClient(url: url, registry: registry)
    }
}
