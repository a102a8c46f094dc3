//! The PROXY protocol (HAProxy's, v1 text and v2 binary) that a load balancer sends before a
//! kiosk's own bytes, naming the kiosk's address. It is read only on connections from the
//! addresses a listener trusts (`proxy_from`), so no client can claim another address past the
//! per-address limits; from those it is required. Parsing is the `ppp` crate's; this reads
//! exactly the header's bytes, leaving the kiosk's (SIP or a TLS hello) to the connection.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use ppp::v2::{Addresses as V2Addresses, Command};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The v2 header's fixed signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header, CRLF included (the specification's 107 bytes).
const V1_MAX: usize = 107;
/// The longest v2 header taken: 16 bytes and addresses, with room for small TLVs.
const V2_MAX: usize = 536;

/// The networks a listener's `proxy_from` names ("10.0.0.5", "10.0.0.0/24", "fd00::/8").
pub fn networks(entries: &[String]) -> Result<Vec<IpNet>, String> {
    entries
        .iter()
        .map(|e| {
            let e = e.trim();
            e.parse::<IpNet>()
                .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("proxy_from: {e:?} is not an address or a network such as 10.0.0.0/24"))
        })
        .collect()
}

/// Whether `peer` is one of the trusted proxies.
pub fn trusted(networks: &[IpNet], peer: IpAddr) -> bool {
    let peer = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
        v4 => v4,
    };
    networks.iter().any(|n| n.contains(&peer))
}

/// Reads a PROXY header from the start of `io`: the client it names, or `None` for a LOCAL
/// (or UNKNOWN) one, which the proxy sends for its own checks (the connection is then the
/// proxy's). Exactly the header's bytes are read.
pub async fn read_header<S: AsyncRead + Unpin>(io: &mut S) -> Result<Option<SocketAddr>, String> {
    let mut head = [0u8; 12];
    io.read_exact(&mut head).await.map_err(|e| format!("no PROXY header: {e}"))?;
    if &head == V2_SIGNATURE {
        let mut rest = [0u8; 4];
        io.read_exact(&mut rest).await.map_err(|e| format!("a short PROXY v2 header: {e}"))?;
        let length = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        if 16 + length > V2_MAX {
            return Err(format!("a PROXY v2 header of {} bytes (at most {V2_MAX} are taken)", 16 + length));
        }
        let mut header = Vec::with_capacity(16 + length);
        header.extend_from_slice(&head);
        header.extend_from_slice(&rest);
        header.resize(16 + length, 0);
        io.read_exact(&mut header[16..]).await.map_err(|e| format!("a short PROXY v2 header: {e}"))?;
        return v2(&header);
    }
    if !head.starts_with(b"PROXY ") {
        return Err("the connection does not start with a PROXY header".into());
    }
    let mut header = head.to_vec();
    while !header.ends_with(b"\r\n") {
        if header.len() >= V1_MAX {
            return Err(format!("a PROXY v1 header longer than {V1_MAX} bytes"));
        }
        let byte = io.read_u8().await.map_err(|e| format!("a short PROXY v1 header: {e}"))?;
        header.push(byte);
    }
    v1(&header)
}

fn v1(header: &[u8]) -> Result<Option<SocketAddr>, String> {
    let text = std::str::from_utf8(header).map_err(|_| "a PROXY v1 header that is not text".to_string())?;
    let parsed = ppp::v1::Header::try_from(text).map_err(|e| format!("a PROXY v1 header that does not parse: {e}"))?;
    Ok(match parsed.addresses {
        ppp::v1::Addresses::Tcp4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        ppp::v1::Addresses::Tcp6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        ppp::v1::Addresses::Unknown => None,
    })
}

fn v2(header: &[u8]) -> Result<Option<SocketAddr>, String> {
    let parsed =
        ppp::v2::Header::try_from(header).map_err(|e| format!("a PROXY v2 header that does not parse: {e}"))?;
    if parsed.command == Command::Local {
        return Ok(None);
    }
    Ok(match parsed.addresses {
        V2Addresses::IPv4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        V2Addresses::IPv6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        V2Addresses::Unspecified | V2Addresses::Unix(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> (Result<Option<SocketAddr>, String>, Vec<u8>) {
        let mut io = bytes;
        let header = read_header(&mut io).await;
        (header, io.to_vec())
    }

    #[tokio::test]
    async fn headers_name_the_client_and_leave_the_kiosks_bytes() {
        let (h, rest) = read(b"PROXY TCP4 192.0.2.7 10.0.0.1 5555 6001\r\n9300CNkiosk1|").await;
        assert_eq!(h.unwrap(), Some("192.0.2.7:5555".parse().unwrap()));
        assert_eq!(rest, b"9300CNkiosk1|");
        let (h, _) = read(b"PROXY TCP6 2001:db8::7 2001:db8::1 5555 6001\r\n").await;
        assert_eq!(h.unwrap(), Some("[2001:db8::7]:5555".parse().unwrap()));
        assert_eq!(read(b"PROXY UNKNOWN\r\n").await.0.unwrap(), None);

        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend_from_slice(&[0x21, 0x11, 0, 12, 192, 0, 2, 8, 10, 0, 0, 1, 0x15, 0xb3, 0x17, 0x71]);
        v2.extend_from_slice(b"\x16\x03\x01");
        let (h, rest) = read(&v2).await;
        assert_eq!(h.unwrap(), Some("192.0.2.8:5555".parse().unwrap()));
        assert_eq!(rest, b"\x16\x03\x01", "a TLS hello after it is left as it was");
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(read(&local).await.0.unwrap(), None, "the proxy's own check");
    }

    #[tokio::test]
    async fn anything_else_is_refused_with_why() {
        for bad in [
            &b"9300CNkiosk1|COsecret|\r"[..],
            b"PROXY TCP4 not-an-address 10.0.0.1 5555 6001\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 5555",
            &[b'P'; 300][..],
            b"PROXY TCP4 192.0.2.7 10.0.0.1 5555 6001 and much more text than any header would ever carry\r\n",
        ] {
            assert!(read(bad).await.0.is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let mut long = V2_SIGNATURE.to_vec();
        long.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(read(&long).await.0.unwrap_err().contains("at most"));
    }

    #[test]
    fn trusted_networks_are_addresses_or_prefixes() {
        let n = networks(&["10.0.0.5".into(), "192.0.2.0/24".into(), "fd00::/8".into()]).unwrap();
        assert!(trusted(&n, "10.0.0.5".parse().unwrap()));
        assert!(!trusted(&n, "10.0.0.6".parse().unwrap()));
        assert!(trusted(&n, "192.0.2.200".parse().unwrap()));
        assert!(trusted(&n, "::ffff:10.0.0.5".parse().unwrap()), "an IPv4 proxy on a dual-stack socket");
        assert!(trusted(&n, "fd12::1".parse().unwrap()));
        assert!(networks(&["ten".into()]).unwrap_err().contains("not an address"));
    }
}
