import DLHubCore
import Testing

/// Who listens on a port, from the kernel's socket tables (what clients check before they send
/// a credential to a local service).
@Suite struct ListeningSocketsTests {
    static let tcp = """
          sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
           0: 0100007F:222E 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 41001 1 0000000000000000 100 0 0 10 0
           1: 0100007F:222E 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1001        0 41002 1 0000000000000000 20 4 30 10 -1
           2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1002        0 41003 1 0000000000000000 100 0 0 10 0
        """
    static let tcp6 = """
          sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
           0: 00000000000000000000000001000000:222E 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1003        0 41004 1
        """

    @Test func onlyListeningSocketsOfThePortCount() {
        // 0x222E = 8750: dlhub (999) listens on IPv4, uid 1003 on IPv6; 1001 is a client connection.
        #expect(ListeningSockets.owners(port: 8750, tables: [Self.tcp, Self.tcp6]) == [999, 1003])
        #expect(ListeningSockets.owners(port: 8080, tables: [Self.tcp]) == [1002])
        #expect(ListeningSockets.owners(port: 9, tables: [Self.tcp]).isEmpty)
        #expect(ListeningSockets.owners(port: 8750, tables: ["garbage", ""]).isEmpty)
    }

    @Test func loopbackHosts() {
        for host in ["127.0.0.1", "127.1.2.3", "localhost", "LOCALHOST", "::1", "[::1]"] { #expect(ListeningSockets.isLoopback(host)) }
        for host in ["login1.cluster.edu", "10.0.0.1", "128.0.0.1", ""] { #expect(!ListeningSockets.isLoopback(host)) }
    }
}
