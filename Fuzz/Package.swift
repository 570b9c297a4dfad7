// swift-tools-version:6.2
// Fuzz targets for the parsers that see untrusted bytes, built with the toolchain's libFuzzer:
//   Fuzz/run [SECONDS]
// builds every Swift target, the project's included, with -sanitize=fuzzer,address (passed on
// the command line, so the code under test is instrumented, not only the targets) and runs each
// target on its corpus.
import Foundation
import PackageDescription

// The project is the package in the parent directory; SwiftPM names a path dependency after its
// directory, which is whatever the clone is called.
let project = URL(fileURLWithPath: Context.packageDirectory).deletingLastPathComponent().lastPathComponent.lowercased()

// The entry point is each target's own `<Target>_main` (handing over to libFuzzer), not top-level code.
let library: [SwiftSetting] = [.unsafeFlags(["-parse-as-library"])]
let link: [LinkerSetting] = [.unsafeFlags(["-sanitize=fuzzer,address", "-use-ld=lld"])]

let package = Package(
    name: "dlhub-fuzz",
    dependencies: [.package(path: "..")],
    targets: [.target(name: "FuzzSupport", path: "Sources/FuzzSupport")]
        + ["FuzzPilotFrames", "FuzzJSON", "FuzzMetadata", "FuzzArchive"].map { name in
            .executableTarget(
                name: name,
                dependencies: [
                    "FuzzSupport", .product(name: "DLHubCore", package: project), .product(name: "DLHubArchive", package: project),
                ],
                path: "Sources/\(name)", swiftSettings: library, linkerSettings: link)
        }
)
