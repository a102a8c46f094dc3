//! TLS listeners: TLS 1.2 and 1.3 with certificates from PEM files, and mutual TLS that
//! refuses a client without a certificate from the configured CA.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{start, test_config, vector_world};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sip2d::net::{Listener, TlsFiles};

struct Pki {
    ca: String,
    files: TlsFiles,
    client_cert: String,
    client_key: String,
    stranger_cert: String,
    stranger_key: String,
}

fn pki(dir: &Path) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "sip2d test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let server =
        CertificateParams::new(vec!["localhost".to_string()]).unwrap().signed_by(&server_key, &ca, &ca_key).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params.distinguished_name.push(DnType::CommonName, "kiosk1");
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();

    // A client certificate from a CA the server does not trust.
    let other_key = KeyPair::generate().unwrap();
    let mut other_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    other_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let other_ca = other_params.self_signed(&other_key).unwrap();
    let stranger_key = KeyPair::generate().unwrap();
    let mut stranger_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    stranger_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let stranger = stranger_params.signed_by(&stranger_key, &other_ca, &other_key).unwrap();

    let write = |name: &str, pem: String| {
        let p = dir.join(name);
        std::fs::write(&p, pem).unwrap();
        p
    };
    let files = TlsFiles {
        cert: write("server.pem", server.pem()),
        key: write("server.key", server_key.serialize_pem()),
        client_ca: Some(write("ca.pem", ca.pem())),
    };
    Pki {
        ca: ca.pem(),
        files,
        client_cert: client.pem(),
        client_key: client_key.serialize_pem(),
        stranger_cert: stranger.pem(),
        stranger_key: stranger_key.serialize_pem(),
    }
}

fn client_config(
    pki: &Pki,
    version: &'static rustls::SupportedProtocolVersion,
    cert: Option<(&str, &str)>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(pki.ca.as_bytes()).unwrap()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots);
    let config = match cert {
        Some((c, k)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(c.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(k.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// Logs in over TLS and asks for a patron status; the reply, or the I/O error.
fn session(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> std::io::Result<(String, String)> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let conn = rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut ask = |frame: &str| -> std::io::Result<String> {
        tls.write_all(format!("{frame}\r").as_bytes())?;
        tls.flush()?;
        let mut out = Vec::new();
        let mut b = [0u8; 1];
        loop {
            match tls.read(&mut b)? {
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                _ if b[0] == b'\r' => return Ok(String::from_utf8_lossy(&out).into_owned()),
                _ => out.push(b[0]),
            }
        }
    };
    let login = ask("9300CNkiosk1|COs3cret-kiosk|")?;
    let status = ask("2300120261122    120000AOMAIN|AA21234000012345|AC|AD4321|")?;
    let version = tls.conn.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default();
    Ok((format!("{login} {status}"), version))
}

#[test]
fn tls_listeners_serve_tls_1_2_and_1_3_and_mutual_tls_needs_a_trusted_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let mut config = test_config();
    let plain_tls = TlsFiles { client_ca: None, ..pki.files.clone() };
    config.listen = vec![
        Listener::tls("127.0.0.1:0".parse().unwrap(), plain_tls),
        Listener::tls("127.0.0.1:0".parse().unwrap(), pki.files.clone()),
    ];
    let s = start(vector_world, config);
    let (tls_addr, mtls_addr) = (s.addrs[0].0, s.addrs[1].0);
    assert!(s.addrs.iter().all(|(_, tls)| *tls));

    for (version, name) in [(&rustls::version::TLS13, "TLSv1_3"), (&rustls::version::TLS12, "TLSv1_2")] {
        let (replies, negotiated) = session(tls_addr, client_config(&pki, version, None)).unwrap();
        assert!(replies.starts_with("941 24") && replies.contains("|BLY|CQY|"), "{replies}");
        assert_eq!(negotiated, name);
    }

    // The TLS-only listener does not speak plain SIP.
    let mut plain = TcpStream::connect(tls_addr).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    plain.write_all(b"9300CNkiosk1|COs3cret-kiosk|\r").unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(!got.starts_with(b"94"), "no plain-text reply on a TLS port: {got:?}");
    assert_eq!(got.first(), Some(&0x15), "a TLS alert, then the close");

    // Mutual TLS: no certificate, or one from another CA, is refused; the CA's client is served.
    assert!(session(mtls_addr, client_config(&pki, &rustls::version::TLS13, None)).is_err());
    let stranger = Some((pki.stranger_cert.as_str(), pki.stranger_key.as_str()));
    assert!(session(mtls_addr, client_config(&pki, &rustls::version::TLS13, stranger)).is_err());
    let trusted = Some((pki.client_cert.as_str(), pki.client_key.as_str()));
    let (replies, _) = session(mtls_addr, client_config(&pki, &rustls::version::TLS12, trusted)).unwrap();
    assert!(replies.starts_with("941 24"), "{replies}");
}

#[test]
fn a_tls_listener_with_unreadable_files_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = TlsFiles { cert: dir.path().join("none.pem"), key: dir.path().join("none.key"), client_ca: None };
    let mut config = test_config();
    config.listen = vec![Listener::tls("127.0.0.1:0".parse().unwrap(), missing)];
    let engine = std::sync::Arc::new(common::open(dir.path()));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt.block_on(sip2d::net::Server::bind(&config, engine)).err().expect("refused");
    assert!(err.to_string().contains("none.pem"), "{err}");
}

#[test]
fn a_client_that_never_finishes_the_handshake_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let mut config = test_config();
    config.limits.tls_handshake_timeout = Duration::from_millis(300);
    config.listen = vec![Listener::tls("127.0.0.1:0".parse().unwrap(), pki.files.clone())];
    let s = start(vector_world, config);
    let mut silent = TcpStream::connect(s.addrs[0].0).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    let _ = silent.read_to_end(&mut got);
    assert!(got.is_empty(), "nothing is sent to a client that says nothing");
    assert!(started.elapsed() < Duration::from_secs(5), "closed by the handshake timeout, not the read timeout");
    // Others are served meanwhile and after.
    let trusted = Some((pki.client_cert.as_str(), pki.client_key.as_str()));
    assert!(session(s.addrs[0].0, client_config(&pki, &rustls::version::TLS13, trusted)).is_ok());
}

/// A ClientHello offering only `version` (no supported_versions extension), with suites and
/// extensions that the server's certificate (ECDSA P-256) could otherwise be served with.
fn client_hello(version: [u8; 2]) -> Vec<u8> {
    let mut ext = Vec::new();
    let mut add = |kind: u16, data: &[u8]| {
        ext.extend_from_slice(&kind.to_be_bytes());
        ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
        ext.extend_from_slice(data);
    };
    add(0x000a, &[0, 4, 0x00, 0x1d, 0x00, 0x17]); // supported groups: x25519, P-256
    add(0x000b, &[1, 0]); // EC point formats: uncompressed
    add(0x000d, &[0, 4, 0x04, 0x03, 0x08, 0x04]); // signature algorithms: ECDSA P-256 SHA-256, RSA-PSS
    add(0x0017, &[]); // extended master secret
    add(0xff01, &[0]); // renegotiation info
    let suites: [u16; 5] = [0xc02b, 0xc02c, 0xcca9, 0xc009, 0xc00a];
    let mut body = Vec::new();
    body.extend_from_slice(&version);
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // no session id
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: none
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![1u8, 0];
    hs.extend_from_slice(&(body.len() as u16).to_be_bytes());
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

/// The first seven bytes the server answers a hello with: a record header and the start of
/// its body.
fn answer_to(addr: SocketAddr, hello: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(hello).unwrap();
    let mut got = vec![0u8; 7];
    let mut n = 0;
    while n < got.len() {
        match s.read(&mut got[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    got.truncate(n);
    got
}

/// Issue 14 (held on main, now with its test): a TLS 1.0 or 1.1 handshake is refused with a
/// protocol_version alert; the same hello offering TLS 1.2 gets a ServerHello, so it is the
/// version alone that is refused.
#[test]
fn tls_1_0_and_1_1_handshakes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let mut config = test_config();
    config.listen = vec![Listener::tls("127.0.0.1:0".parse().unwrap(), pki.files.clone())];
    let s = start(vector_world, config);
    let addr = s.addrs[0].0;
    let tls12 = answer_to(addr, &client_hello([3, 3]));
    assert_eq!((tls12.first(), tls12.get(5)), (Some(&0x16), Some(&0x02)), "TLS 1.2: a ServerHello: {tls12:?}");
    for (name, version) in [("TLS 1.0", [3, 1]), ("TLS 1.1", [3, 2])] {
        let got = answer_to(addr, &client_hello(version));
        // An alert record (21), fatal (2), protocol_version (70); no ServerHello.
        assert_eq!(got.first(), Some(&0x15), "{name}: an alert, not a handshake: {got:?}");
        assert_eq!((got.get(5), got.get(6)), (Some(&2), Some(&70)), "{name}: fatal protocol_version: {got:?}");
    }
}

/// One HTTPS request for `path`: the response's text.
fn https_get(addr: SocketAddr, ca: &str, path: &str) -> std::io::Result<String> {
    https_get_after(addr, ca, path, b"")
}

/// [`https_get`] with `prefix` sent in clear first (a load balancer's PROXY header).
fn https_get_after(addr: SocketAddr, ca: &str, path: &str, prefix: &[u8]) -> std::io::Result<String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    tcp.write_all(prefix)?;
    let conn = rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(tls, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut out = Vec::new();
    match tls.read_to_end(&mut out) {
        Ok(_) => {}
        // The server closes without close_notify once the reply is out; the reply is whole.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {}
        Err(e) => return Err(e),
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The staff console over HTTPS with the certificate files the configuration names; plain
/// HTTP on that port gets no page; after the files are replaced, a SIGHUP makes new
/// connections use the new certificate, as the SIP listeners do.
#[test]
fn the_console_speaks_https_and_takes_new_certificates_on_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, mut child, console) = https_demo(dir.path(), "console", "", "staff console on https://");

    let page = https_get(console, &pki.ca, "/login").unwrap();
    assert!(page.starts_with("HTTP/1.1 200") && page.contains("Log in"), "{page}");
    // Plain HTTP on the HTTPS port: no page.
    let mut plain = TcpStream::connect(console).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    plain.write_all(b"GET /login HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains("Log in"));

    // New files from another CA, then SIGHUP: new connections show the new certificate.
    let other = pki_in(&dir.path().join("other"));
    std::fs::copy(&other.files.cert, &pki.files.cert).unwrap();
    std::fs::copy(&other.files.key, &pki.files.key).unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if https_get(console, &other.ca, "/login").is_ok_and(|p| p.contains("Log in")) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the new certificate was not taken");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(https_get(console, &pki.ca, "/login").is_err(), "the old certificate is no longer served");
    let _ = child.kill();
    let _ = child.wait();
}

/// A second set of files, in its own directory.
fn pki_in(dir: &Path) -> Pki {
    std::fs::create_dir_all(dir).unwrap();
    pki(dir)
}

/// The patron pages on a listener of their own over HTTPS, facing the public: the page is
/// served with the configured certificate, plain HTTP on that port gets none, and the
/// console's pages are not there.
#[test]
fn the_patron_pages_listener_speaks_https() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, mut child, pages) = https_demo(dir.path(), "patron_pages", "", "patron pages on https://");
    let page = https_get(pages, &pki.ca, "/my/login").unwrap();
    assert!(page.starts_with("HTTP/1.1 200") && page.contains("Log in to your library account"), "{page}");
    let console = https_get(pages, &pki.ca, "/login").unwrap();
    assert!(console.starts_with("HTTP/1.1 404"), "{console}");
    let mut plain = TcpStream::connect(pages).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    plain.write_all(b"GET /my/login HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains("library account"), "no page over plain HTTP");
    let _ = child.kill();
    let _ = child.wait();
}

/// The demo with `[SECTION]` (the console or the patron pages) on HTTPS, and `more` keys in
/// it, with test certificates made in `dir`: the certificates, the server, and the address it
/// announced.
fn https_demo(
    dir: &Path,
    section: &str,
    more: &str,
    announced: &str,
) -> (Pki, std::process::Child, std::net::SocketAddr) {
    let pki = pki(dir);
    let config = dir.join("sip2d.toml");
    let files = format!(
        "[{section}]\nlisten = \"127.0.0.1:0\"\ntls = {{ cert = \"{}\", key = \"{}\" }}\n{more}",
        pki.files.cert.display(),
        pki.files.key.display()
    );
    std::fs::write(&config, files).unwrap();
    let data = dir.join("demo");
    let (c, d) = (config.to_str().unwrap(), data.to_str().unwrap());
    let args = ["--config", c, "--data", d, "serve", "--demo", "--listen", "127.0.0.1:0"];
    let (child, stdout, address) = common::spawn_sip2d(&args, "warn", std::process::Stdio::null(), announced);
    std::thread::spawn(move || {
        use std::io::BufRead;
        for _ in stdout.lines() {}
    });
    (pki, child, address)
}

/// Behind a load balancer on an HTTPS listener: the PROXY header comes in clear before the TLS
/// hello, as HAProxy sends it, and the page is served over TLS after it; without the header
/// the balancer's connection gets nothing.
#[test]
fn a_proxy_header_comes_before_the_tls_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, mut child, pages) =
        https_demo(dir.path(), "patron_pages", "proxy_from = [\"127.0.0.1\"]\n", "patron pages on https://");
    let header = b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 443\r\n";
    let page = https_get_after(pages, &pki.ca, "/my/login", header).unwrap();
    assert!(page.starts_with("HTTP/1.1 200") && page.contains("Log in to your library account"), "{page}");
    assert!(https_get(pages, &pki.ca, "/my/login").is_err(), "no header from the balancer: no page");
    let _ = child.kill();
    let _ = child.wait();
}
