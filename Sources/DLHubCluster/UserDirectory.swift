import DLHubCore
import Glibc

/// Looks users and groups up in the host's account database (NSS: files, LDAP, SSSD).
public enum UserDirectory {
    /// The caller for a uid: login name and every group the user is in.
    public static func caller(uid: UInt32, gid: UInt32) -> Caller? {
        guard let login = loginName(uid: uid) else { return nil }
        return Caller(uid: uid, gid: gid, login: login, groups: groupNames(login: login, gid: gid))
    }

    public static func loginName(uid: UInt32) -> String? {
        var pwd = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16384)
        guard getpwuid_r(uid, &pwd, &buffer, buffer.count, &result) == 0, result != nil, let name = pwd.pw_name else { return nil }
        return String(cString: name)
    }

    public static func uid(login: String) -> UInt32? {
        var pwd = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16384)
        guard getpwnam_r(login, &pwd, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return pwd.pw_uid
    }

    public static func groupNames(login: String, gid: UInt32) -> [String] {
        var count: Int32 = 64
        var gids = [gid_t](repeating: 0, count: Int(count))
        if getgrouplist(login, gid, &gids, &count) < 0 {
            gids = [gid_t](repeating: 0, count: Int(count))
            _ = getgrouplist(login, gid, &gids, &count)
        }
        var names: [String] = []
        for g in gids.prefix(Int(count)) {
            var grp = group()
            var result: UnsafeMutablePointer<group>?
            var buffer = [CChar](repeating: 0, count: 16384)
            if getgrgid_r(g, &grp, &buffer, buffer.count, &result) == 0, result != nil, let n = grp.gr_name {
                names.append(String(cString: n))
            }
        }
        return Array(Set(names)).sorted()
    }
}
