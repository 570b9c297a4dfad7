// swift-tools-version:6.2
import PackageDescription

var swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]
// CI builds with warnings as errors for this package's own targets (not its dependencies).
if Context.environment["DLHUB_WARNINGS_AS_ERRORS"] == "1" {
    swiftSettings.append(.treatAllWarnings(as: .error))
}

let package = Package(
    name: "dlhub-slurm",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "dlhubd", targets: ["dlhubd"]),
        .executable(name: "dlhub", targets: ["dlhub"]),
        .executable(name: "dlhub-pilot", targets: ["dlhub-pilot"]),
        // For the fuzz targets in Fuzz/ (a package of their own, built with libFuzzer).
        .library(name: "DLHubCore", targets: ["DLHubCore"]),
        .library(name: "DLHubArchive", targets: ["DLHubArchive"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        // Property tests: many cases from a seed, shrunk to the smallest failing one.
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
        // Markdown for the web catalogue's model cards (raw HTML in them is escaped, see ModelCard).
        .package(url: "https://github.com/JohnSundell/Ink.git", from: "0.6.0"),
    ],
    targets: [
        // C stays at the edge: module maps and shim headers only.
        .systemLibrary(name: "CSlurm", path: "Sources/CSlurm"),
        // glibc's posix_spawn close-from and chdir file actions (declared only under _GNU_SOURCE).
        .systemLibrary(name: "CSpawn", path: "Sources/CSpawn"),
        .systemLibrary(name: "CMunge", path: "Sources/CMunge", pkgConfig: "munge"),
        .systemLibrary(name: "CArchive", path: "Sources/CArchive", pkgConfig: "libarchive"),

        // The domain, with no I/O: metadata, validation, identifiers, archives, state machines.
        .target(
            name: "DLHubCore",
            dependencies: [.product(name: "Crypto", package: "swift-crypto"), .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        // The one target that imports libslurm and libmunge.
        .target(
            name: "DLHubCluster",
            dependencies: [
                "CSlurm", "CMunge", "CSpawn", "DLHubCore",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The one target that imports libarchive: safe unpacking of uploads, packing for `dlhub publish`.
        .target(name: "DLHubArchive", dependencies: ["CArchive", "DLHubCore"], swiftSettings: swiftSettings),
        // The service: registry, index, auth, HTTP API, task store, dispatch, pilot manager.
        .target(
            name: "DLHubService",
            dependencies: [
                "DLHubCore", "DLHubCluster", "DLHubArchive",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Ink", package: "Ink"),
            ],
            swiftSettings: swiftSettings
        ),
        // The pilot: connects out to dlhubd from a Slurm job, keeps workers resident.
        .target(
            name: "DLHubPilot",
            dependencies: [
                "DLHubCore", "DLHubCluster",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // Test doubles for the seams (Slurm client, authenticator, clock).
        .target(
            name: "DLHubTesting",
            dependencies: ["DLHubCore", "DLHubCluster", "DLHubService"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "dlhubd",
            dependencies: [
                "DLHubService", "DLHubCluster",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "dlhub",
            dependencies: [
                "DLHubCore", "DLHubCluster", "DLHubArchive", "DLHubPilot",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "dlhub-pilot",
            dependencies: [
                "DLHubPilot",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),

        .testTarget(
            name: "DLHubCoreTests",
            dependencies: [
                "DLHubCore", "DLHubTesting", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "DLHubClusterTests",
            dependencies: [
                "DLHubCluster", "DLHubPilot", "DLHubTesting", .product(name: "PropertyBased", package: "swift-property-based"),
            ], swiftSettings: swiftSettings),
        .testTarget(
            name: "DLHubServiceTests",
            dependencies: [
                "DLHubService", "DLHubTesting",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Ink", package: "Ink"),
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "EndToEndTests", dependencies: ["DLHubCore", "DLHubTesting"], swiftSettings: swiftSettings),
    ]
)
