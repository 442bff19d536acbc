//! Which local account holds the other end of a TCP connection from this host, as the kernel's
//! socket table (`/proc/net/tcp`, `/proc/net/tcp6`) records it.
//!
//! A caller on this host that sends no credential can still be told apart from other local
//! users: the kernel, not the caller, says whose socket it is. The Mesos agent uses this for
//! executors that send no token (pymesos's driver sends none).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The uid owning the socket whose local end is `client` and whose remote end is `server`
/// (the caller's side of a connection to `server`), if this host's table lists it.
pub fn socket_owner(client: SocketAddr, server: SocketAddr) -> std::io::Result<Option<u32>> {
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match std::fs::read_to_string(table) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if let Some(uid) = owner_in(&text, client, server) {
            return Ok(Some(uid));
        }
    }
    Ok(None)
}

/// The uid of the row of `table` (the text of `/proc/net/tcp` or `tcp6`) whose local address is
/// `local` and whose remote address is `remote`.
pub fn owner_in(table: &str, local: SocketAddr, remote: SocketAddr) -> Option<u32> {
    let same = |a: SocketAddr, b: SocketAddr| {
        a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
    };
    table.lines().skip(1).find_map(|line| {
        let mut cols = line.split_whitespace();
        let (_slot, l, r) = (cols.next()?, cols.next()?, cols.next()?);
        let uid = cols.nth(4)?;
        let (l, r) = (parse_addr(l)?, parse_addr(r)?);
        (same(l, local) && same(r, remote))
            .then(|| uid.parse().ok())
            .flatten()
    })
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6): each 32-bit word of the address is
/// printed in the host's byte order, the port as a number.
fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = ip.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(w, 16).ok()?.to_ne_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex4(ip: Ipv4Addr) -> String {
        format!("{:08X}", u32::from_ne_bytes(ip.octets()))
    }

    #[test]
    fn finds_the_owner_of_the_callers_end() {
        let lo = hex4(Ipv4Addr::LOCALHOST);
        let table = format!(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
             \x20  0: {lo}:13C5 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n\
             \x20  1: {lo}:9C40 {lo}:13C5 01 00000000:00000000 00:00000000 00000000 65534        0 2 1 0 20 4 30 10 -1\n\
             \x20  2: {lo}:13C5 {lo}:9C40 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1\n"
        );
        let client: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let server: SocketAddr = "127.0.0.1:5061".parse().unwrap();
        assert_eq!(owner_in(&table, client, server), Some(65534));
        // The server's own end is root's; another port is nobody's.
        assert_eq!(owner_in(&table, server, client), Some(0));
        let other: SocketAddr = "127.0.0.1:40001".parse().unwrap();
        assert_eq!(owner_in(&table, other, server), None);
        // An IPv4-mapped address names the same socket.
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:40000".parse().unwrap();
        assert_eq!(owner_in(&table, mapped, server), Some(65534));
    }

    #[test]
    fn reads_ipv6_rows() {
        let words: String = Ipv6Addr::LOCALHOST
            .octets()
            .chunks(4)
            .map(|c| format!("{:08X}", u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
            .collect();
        let table = format!("header\n   0: {words}:9C40 {words}:13C5 01 0:0 0:0 0 1000 0 9\n");
        let client: SocketAddr = "[::1]:40000".parse().unwrap();
        let server: SocketAddr = "[::1]:5061".parse().unwrap();
        assert_eq!(owner_in(&table, client, server), Some(1000));
        assert_eq!(owner_in("garbage\n 0: zz:zz", client, server), None);
    }

    #[test]
    fn the_kernel_names_this_process_as_the_owner_of_its_own_connection() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (_s, _) = l.accept().unwrap();
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        let owner = socket_owner(c.local_addr().unwrap(), l.local_addr().unwrap()).unwrap();
        assert_eq!(owner, Some(me));
    }
}
