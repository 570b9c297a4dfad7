import DLHubCore
import Testing

/// The command lines that give a worker its view of the node (the real sandbox is exercised by
/// the isolation end-to-end tests; these pin down what each mode renders).
@Suite struct WorkerSandboxTests {
    let root = RootLayout(links: ["/bin": "usr/bin", "/lib": "usr/lib", "/lib64": "usr/lib64", "/sbin": "usr/sbin"], directories: [])

    func sandbox(network: Bool = false, devices: [String] = []) -> WorkerSandbox {
        WorkerSandbox(
            program: .python(interpreter: "/envs/py-1/bin/python", shim: "/opt/dlhub/share/dlhub/python/dlhub_worker.py"),
            servableDirectory: "/registry/servables/alice/iris/1", readOnlyPaths: ["/envs/py-1", "/usr/lib/x"],
            scratchDirectory: "/tmp/dlhub-worker-abc", environment: ["OMP_NUM_THREADS": "2", "PATH": "/envs/py-1/bin:/usr/bin:/bin"],
            devices: devices, network: network, limits: WorkerLimits(memoryBytes: 1 << 30, openFiles: 512, processes: 64, tmpBytes: 1 << 20)
        )
    }

    func pairs(_ args: [String], _ flag: String) -> [(String, String)] {
        args.indices.filter { args[$0] == flag && $0 + 2 < args.count }.map { (args[$0 + 1], args[$0 + 2]) }
    }

    @Test func bubblewrapShowsOnlyTheServableItsEnvironmentAndScratch() {
        let args = sandbox().bubblewrapCommand(
            bubblewrap: "/usr/bin/bwrap", prlimit: "/usr/bin/prlimit", root: root, disableUserNamespaces: true)
        #expect(Array(args.prefix(6)) == ["/usr/bin/prlimit", "--nofile=512", "--nproc=64", "--as=1073741824", "--", "/usr/bin/bwrap"])
        for flag in ["--unshare-all", "--die-with-parent", "--new-session", "--clearenv", "--disable-userns"] {
            #expect(args.contains(flag))
        }
        #expect(!args.contains("--share-net"))
        let readOnly = pairs(args, "--ro-bind")
        #expect(readOnly.contains { $0 == ("/registry/servables/alice/iris/1", "/servable") })
        #expect(readOnly.contains { $0 == ("/opt/dlhub/share/dlhub/python/dlhub_worker.py", "/dlhub/worker.py") })
        #expect(readOnly.contains { $0 == ("/envs/py-1", "/envs/py-1") })
        #expect(!readOnly.contains { $0.0 == "/usr/lib/x" }, "already visible through /usr")
        #expect(!readOnly.contains { $0.0.hasPrefix("/registry") && $0.1 != "/servable" }, "nothing else of the registry")
        #expect(pairs(args, "--bind").isEmpty, "nothing of the node is writable")
        // Everything a worker may write is a tmpfs of a bounded size (scratch on disk was not).
        let sized = args.indices.filter { args[$0] == "--tmpfs" && $0 >= 2 && args[$0 - 2] == "--size" && args[$0 - 1] == "1048576" }
        #expect(sized.map { args[$0 + 1] } == ["/tmp", "/dev/shm", "/scratch"])
        #expect(args.filter { $0 == "--tmpfs" }.count == 3, "no unsized tmpfs")
        let readOnlyAgain = args.indices.filter { args[$0] == "--remount-ro" }.map { args[$0 + 1] }
        #expect(readOnlyAgain == ["/", "/dev"], "the sandbox's own root and /dev are tmpfs mounts: read-only once built")
        #expect(args.firstIndex(of: "--remount-ro")! > args.lastIndex(of: "--tmpfs")!, "after everything is mounted")
        #expect(args.contains("--unshare-user"), "--disable-userns needs it")
        #expect(pairs(args, "--symlink").contains { $0 == ("usr/lib", "/lib") })
        let env = Dictionary(pairs(args, "--setenv").map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a })
        #expect(env["HOME"] == "/scratch" && env["DLHUB_SERVABLE_DIR"] == "/servable" && env["OMP_NUM_THREADS"] == "2")
        #expect(env.keys.allSatisfy { !$0.hasPrefix("SLURM") && !$0.hasPrefix("DLHUB_PILOT") })
        #expect(Array(args.suffix(4)) == ["--", "/envs/py-1/bin/python", "/dlhub/worker.py", "/servable"])
    }

    @Test func networkAndDevicesOnlyWhenGranted() {
        let args = sandbox(network: true, devices: ["/dev/nvidia1"]).bubblewrapCommand(
            bubblewrap: "bwrap", prlimit: nil, root: root, disableUserNamespaces: false)
        #expect(args.first == "bwrap")
        #expect(args.contains("--share-net"))
        #expect(!args.contains("--disable-userns"))
        #expect(pairs(args, "--dev-bind").map(\.0) == ["/dev/nvidia1"])
    }

    @Test func anExecutableServableRunsFromInsideItsDirectory() {
        var s = sandbox()
        s.program = .executable(["./wordcount.pl", "--fast"])
        let args = s.bubblewrapCommand(bubblewrap: "bwrap", prlimit: nil, root: root, disableUserNamespaces: false)
        #expect(Array(args.suffix(2)) == ["/servable/./wordcount.pl", "--fast"])
        #expect(!pairs(args, "--ro-bind").contains { $0.1 == "/dlhub/worker.py" })
        let direct = s.directCommand(prlimit: nil)
        #expect(direct.command == ["/registry/servables/alice/iris/1/./wordcount.pl", "--fast"])
        #expect(direct.environment["HOME"] == "/tmp/dlhub-worker-abc")
    }

    @Test func apptainerRendersTheSiteTemplateWithTheWorkerBoundIn() {
        let rendered = ApptainerCommand().render(image: "/images/tf.sif", sandbox: sandbox())
        #expect(rendered.command.first == "apptainer")
        #expect(rendered.command.contains("/registry/servables/alice/iris/1:/servable:ro"))
        #expect(rendered.command.contains("/opt/dlhub/share/dlhub/python/dlhub_worker.py:/dlhub/worker.py:ro"))
        #expect(Array(rendered.command.suffix(4)) == ["/images/tf.sif", "python3", "/dlhub/worker.py", "/servable"])
        #expect(rendered.environment["APPTAINERENV_DLHUB_SERVABLE_DIR"] == "/servable")
        #expect(rendered.environment["APPTAINERENV_OMP_NUM_THREADS"] == "2")
        #expect(throws: DLHubError.self) { try ApptainerCommand.validate(["apptainer", "exec", "{image}"]) }
        #expect(throws: Never.self) { try ApptainerCommand.validate(["singularity", "exec", "{image}", "{command}"]) }
    }

    @Test func gpusArePinnedOnePerWorkerAndGivenBack() {
        var gpus = GPUAssignment(visibleDevices: "0,1,2")
        #expect(gpus.take(2, for: "w1") == ["0", "1"])
        #expect(gpus.take(2, for: "w2") == nil, "only one left")
        #expect(gpus.take(1, for: "w2") == ["2"])
        gpus.release("w1")
        #expect(gpus.free == ["0", "1"])
        let pinning = GPUAssignment.pinning(["1"])
        #expect(pinning.environment["CUDA_VISIBLE_DEVICES"] == "1")
        #expect(pinning.deviceNodes.first == "/dev/nvidia1")
        #expect(GPUAssignment(visibleDevices: "NoDevFiles").count == 0)
        var none = GPUAssignment(visibleDevices: nil)
        #expect(none.take(1, for: "w") == nil)
    }

    @Test func isolationStatusSurvivesTheHello() {
        for status in [IsolationStatus.available(.bubblewrap), .available(.none), .unavailable(.bubblewrap, reason: "no userns")] {
            #expect(IsolationStatus(parsing: status.description) == status)
        }
        #expect(throws: DLHubError.self) { try IsolationMode(setting: "chroot") }
    }
}
