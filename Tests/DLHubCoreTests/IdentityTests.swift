import DLHubCore
import Testing

@Suite struct IdentityTests {
    let alice = Caller(uid: 1001, gid: 1001, login: "alice", groups: ["alice", "physics"])

    @Test func tokensRoundTripAndExpire() throws {
        let signer = TokenSigner(key: Array(repeating: 9, count: 32))
        let token = signer.sign(alice, expires: 2000)
        #expect(try signer.verify(token, now: 1000).caller == alice)
        #expect(throws: DLHubError.self) { try signer.verify(token, now: 2001) }
    }

    @Test func tamperedOrForeignTokensAreRefused() {
        let signer = TokenSigner(key: Array(repeating: 9, count: 32))
        let other = TokenSigner(key: Array(repeating: 8, count: 32))
        let token = signer.sign(alice, expires: 2000)
        let forged =
            Base64URL.encode(Array(#"{"exp":2000,"gid":0,"groups":[],"login":"root","uid":0}"#.utf8)) + "." + token.split(separator: ".")[1]
        for bad in [other.sign(alice, expires: 2000), forged, "garbage", token + "x"] {
            #expect(throws: DLHubError.self) { try signer.verify(bad, now: 1000) }
        }
    }

    @Test func base64URLRoundTrips() {
        for n in 0..<20 {
            let bytes = (0..<n).map { UInt8(($0 * 37 + 11) % 256) }
            #expect(Base64URL.decode(Base64URL.encode(bytes)) == bytes)
        }
    }

    @Test func visibilityRules() {
        let bob = Caller(uid: 1002, gid: 1002, login: "bob", groups: ["bob"])
        #expect(AccessPolicy.canSee(owner: "alice", visibleTo: [.group("physics")], caller: alice))
        #expect(!AccessPolicy.canSee(owner: "alice", visibleTo: [.group("physics")], caller: bob))
        #expect(AccessPolicy.canSee(owner: "alice", visibleTo: [.user("bob")], caller: bob))
        #expect(AccessPolicy.canSee(owner: "bob", visibleTo: [], caller: bob))
        #expect(AccessPolicy.canSee(owner: "alice", visibleTo: [.everyone], caller: bob))
    }

    @Test func digestsDependOnMetadataAndFiles() {
        let doc: JSONValue = ["dlhub": ["name": "x", "version": 1]]
        let files = [ContentDigest.ManifestEntry(path: "m", size: 1, sha256: ContentDigest.sha256Hex([1]))]
        let a = ContentDigest.compute(metadata: doc, files: files)
        #expect(a == ContentDigest.compute(metadata: doc.setting(["dlhub", "identifier"], to: .string(a)), files: files))
        #expect(a != ContentDigest.compute(metadata: doc.setting(["dlhub", "version"], to: 2), files: files))
        #expect(a != ContentDigest.compute(metadata: doc, files: [.init(path: "m", size: 1, sha256: ContentDigest.sha256Hex([2]))]))
        #expect(ContentDigest.sha256Hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }
}
