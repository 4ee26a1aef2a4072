//! `listen`, `listen_backlog` and `listen_mode` in php-fpm's spellings.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use super::{ListenAddr, MAX_LISTEN_BACKLOG};

const LISTEN_FORMS: &str = "use an absolute socket path (\"/run/php/www.sock\"), \
    \"IPv4:port\" (\"127.0.0.1:9000\"), \"[IPv6]:port\" (\"[::1]:9000\") or a port (\"9000\")";

/// Parses a `listen` value: `"/run/php/x.sock"`, `"127.0.0.1:9000"`, `"[::1]:9000"`, or
/// `"9000"` (every address: [`ListenAddr::Port`]). Host names are refused, not resolved.
pub(crate) fn parse_listen(s: &str) -> Result<ListenAddr, String> {
    if s.starts_with('/') {
        return unix_path(s);
    }
    if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() {
        return port(s).map(ListenAddr::Port);
    }
    let Some((host, port_text)) = s.rsplit_once(':') else {
        return Err(format!("not a listen address; {LISTEN_FORMS}"));
    };
    let port = port(port_text)?;
    ip(host).map(|ip| ListenAddr::Tcp(SocketAddr::new(ip, port)))
}

/// Parses a TCP address (`"127.0.0.1:9253"`, `"[::1]:9253"`, or a port for every IPv4
/// address), as `listen` writes one; a socket path is refused.
pub fn parse_tcp(s: &str) -> Result<SocketAddr, String> {
    match parse_listen(s)? {
        ListenAddr::Tcp(addr) => Ok(addr),
        ListenAddr::Port(port) => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)),
        ListenAddr::Unix(_) => Err("must be a TCP address such as \"127.0.0.1:9253\"".to_string()),
    }
}

fn unix_path(s: &str) -> Result<ListenAddr, String> {
    if s.ends_with('/') {
        return Err("a socket path must name a file, not a directory".to_string());
    }
    if s.contains('\0') {
        return Err("a socket path cannot contain a NUL byte".to_string());
    }
    // sun_path holds 108 bytes including the terminating NUL.
    if s.len() > 107 {
        return Err(format!("a socket path must be at most 107 bytes (this is {})", s.len()));
    }
    Ok(ListenAddr::Unix(PathBuf::from(s)))
}

fn port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("the port must be between 1 and 65535, not \"{s}\"")),
        Ok(port) => Ok(port),
    }
}

fn ip(host: &str) -> Result<IpAddr, String> {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse().map(IpAddr::V6).map_err(|_| format!("\"{v6}\" is not an IPv6 address; {LISTEN_FORMS}"));
    }
    if host.contains(':') {
        return Err(format!("write an IPv6 address in brackets (\"[{host}]:port\")"));
    }
    match host.parse::<Ipv4Addr>() {
        Ok(v4) => Ok(IpAddr::V4(v4)),
        Err(_) if host.is_empty() => Err(format!("the address before the port is empty; {LISTEN_FORMS}")),
        Err(_) => resolve(host),
    }
}

/// A host name's address as php-fpm takes it: the first that `getaddrinfo`
/// gives (`localhost` is `127.0.0.1` on Debian), resolved when the
/// configuration is read.
fn resolve(host: &str) -> Result<IpAddr, String> {
    use std::net::ToSocketAddrs;
    match (host, 0).to_socket_addrs() {
        Ok(mut addrs) => addrs.next().map(|a| a.ip()).ok_or_else(|| format!("\"{host}\" has no address")),
        Err(e) => Err(format!("\"{host}\" is not an IP address and cannot be resolved: {e}")),
    }
}

/// `listen_backlog`: at least 0 (passed to listen(2) as php-fpm passes it: 0 lets Linux hold
/// one connection), or -1 for the maximum (php-fpm's spelling), which becomes
/// [`MAX_LISTEN_BACKLOG`].
pub(crate) fn backlog(n: i64) -> Result<i32, String> {
    match n {
        -1 => Ok(MAX_LISTEN_BACKLOG),
        0..=0x7fff_ffff => Ok(n as i32),
        _ => Err("must be -1 (the maximum) or between 0 and 2147483647".to_string()),
    }
}

/// `listen_allowed_clients`: IP addresses separated by commas (php-fpm's spelling), at least one.
pub(crate) fn allowed_clients(s: &str) -> Result<Vec<IpAddr>, String> {
    let parse = |client: &str| {
        let client = client.trim();
        client.parse::<IpAddr>().map_err(|_| format!("Wrong IP address '{client}' in listen.allowed_clients"))
    };
    let clients = s.split(',').filter(|c| !c.trim().is_empty()).map(parse).collect::<Result<Vec<_>, _>>()?;
    match clients.is_empty() {
        true => Err("There are no allowed addresses".to_string()),
        false => Ok(clients),
    }
}

/// `listen_mode`: an octal string such as `"0660"` or `"660"`, at most `0777`.
pub(crate) fn parse_mode(s: &str) -> Result<u32, String> {
    if s.is_empty() || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err("must be an octal permission mode such as \"0660\"".to_string());
    }
    match u32::from_str_radix(s, 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err("must be an octal permission mode no greater than \"0777\"".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(s: &str) -> ListenAddr {
        ListenAddr::Tcp(s.parse().unwrap())
    }

    #[test]
    fn listen_spellings() {
        let unix = ListenAddr::Unix(PathBuf::from("/run/php/x.sock"));
        assert_eq!(parse_listen("/run/php/x.sock"), Ok(unix));
        assert_eq!(parse_listen("127.0.0.1:9000"), Ok(tcp("127.0.0.1:9000")));
        assert_eq!(parse_listen("[::1]:9000"), Ok(tcp("[::1]:9000")));
        assert_eq!(parse_listen("9000"), Ok(ListenAddr::Port(9000)));
        assert_eq!(parse_tcp("9000"), Ok("0.0.0.0:9000".parse().unwrap()));
        assert_eq!(parse_listen("0.0.0.0:80"), Ok(tcp("0.0.0.0:80")));
    }

    /// Host names are resolved, as php-fpm resolves them (the first address).
    #[test]
    fn host_names_are_resolved() {
        let first = std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 9000)).unwrap().next().unwrap();
        assert_eq!(parse_listen("localhost:9000"), Ok(ListenAddr::Tcp(first)));
    }

    #[test]
    fn bad_listen_values() {
        for bad in [
            "",
            "www.sock",
            "run/x.sock",
            "/run/",
            "127.0.0.1",
            "127.0.0.1:0",
            "0",
            "127.0.0.1:70000",
            ":9000",
            "::1:9000",
            "[::1:9000",
            "[zz]:9000",
            "99999",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad:?} was accepted");
        }
        let long = format!("/{}", "x".repeat(120));
        assert!(parse_listen(&long).unwrap_err().contains("107 bytes"));
    }

    #[test]
    fn backlog_values() {
        assert_eq!(backlog(-1), Ok(MAX_LISTEN_BACKLOG));
        assert_eq!(backlog(1), Ok(1));
        assert_eq!(backlog(4096), Ok(4096));
        assert_eq!(backlog(0), Ok(0));
        assert!(backlog(-2).is_err());
        assert!(backlog(1 << 40).is_err());
    }

    #[test]
    fn mode_values() {
        assert_eq!(parse_mode("0660"), Ok(0o660));
        assert_eq!(parse_mode("660"), Ok(0o660));
        assert_eq!(parse_mode("0777"), Ok(0o777));
        for bad in ["", "0x1ff", "0980", "1777", "rw-rw----", "-660"] {
            assert!(parse_mode(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
