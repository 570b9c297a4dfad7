/// The environment variables that say how a site reaches the network (proxies, certificate
/// authorities, package index settings): what an installer run by the service must inherit,
/// and nothing else of the service's environment.
public enum NetworkEnvironment {
    static let names: Set<String> = [
        "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy", "all_proxy",
        "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_CERT",
    ]

    /// The network settings in `environment`, including the installers' own (`PIP_*`, `UV_*`).
    public static func passedThrough(_ environment: [String: String]) -> [String: String] {
        environment.filter { names.contains($0.key) || $0.key.hasPrefix("PIP_") || $0.key.hasPrefix("UV_") }
    }
}
