/// The release of this build, as the repository's `VERSION` file says (a test keeps them equal).
public enum DLHubVersion {
    public static let current = "0.1.0"
}
