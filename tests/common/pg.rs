//! For the PostgreSQL tests: a database of their own on the test server, and a TCP proxy in
//! front of it that a test can cut (the database lost, without touching the shared server).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The test server: `SIP2D_TEST_POSTGRES`, or the local one the CI machine runs.
pub fn server() -> String {
    std::env::var("SIP2D_TEST_POSTGRES")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "host=127.0.0.1 port=5432 user=postgres".into())
}

/// A database made for one test; dropped (connections and all) with it.
pub struct TestDb {
    server: String,
    pub name: String,
}

impl TestDb {
    pub fn create(server: &str) -> TestDb {
        let name = format!("sip2d_t_{}_{}", std::process::id(), jiff::Timestamp::now().as_nanosecond());
        let mut admin = postgres::Client::connect(&format!("{server} dbname=postgres"), postgres::NoTls)
            .unwrap_or_else(|e| panic!("no PostgreSQL at {server:?} ({e}): set SIP2D_TEST_POSTGRES"));
        admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        TestDb { server: server.into(), name }
    }

    pub fn url(&self) -> String {
        format!("{} dbname={}", self.server, self.name)
    }

    /// The connection string to this database through `proxy`.
    pub fn via(&self, proxy: &Proxy) -> String {
        let c: postgres::Config = self.server.parse().unwrap();
        format!(
            "host=127.0.0.1 port={} user={} dbname={}",
            proxy.addr.port(),
            c.get_user().unwrap_or("postgres"),
            self.name
        )
    }

    /// The test server's TCP address.
    pub fn server_addr(&self) -> SocketAddr {
        let c: postgres::Config = self.server.parse().unwrap();
        let host = match c.get_hosts().first() {
            Some(postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".into(),
        };
        let port = c.get_ports().first().copied().unwrap_or(5432);
        std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port)).unwrap().next().unwrap()
    }

    /// A connection of the test's own, to look into the database.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&format!("{} dbname=postgres", self.server), postgres::NoTls) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

/// A TCP proxy to the test server. Cut, it closes every connection through it and every new
/// one at once, as a database that went away; restored, it forwards again.
pub struct Proxy {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// In front of `host:port`.
    pub fn start(to: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (c, o) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if c.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(to) else { continue };
                let mut held = o.lock().unwrap();
                for s in [&client, &server] {
                    if let Ok(s) = s.try_clone() {
                        held.push(s);
                    }
                }
                for (mut from, mut into) in
                    [(client.try_clone(), server.try_clone()), (server.try_clone(), client.try_clone())]
                        .into_iter()
                        .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut into);
                        let _ = into.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { addr, cut, open }
    }

    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// A front for the test server as PostgreSQL speaks TLS: it answers a client's SSLRequest
/// with `S` and a TLS handshake under `tls` (its certificate), then relays to the server in
/// the clear; or, without `tls`, with `N`, as a server that will not do TLS, and relays the
/// rest as it comes.
pub struct TlsFront {
    pub addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

impl TlsFront {
    pub fn start(to: SocketAddr, tls: Option<Arc<rustls::ServerConfig>>) -> TlsFront {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let tls = tls.clone();
                tokio::spawn(async move {
                    let mut first = [0u8; 8];
                    if client.read_exact(&mut first).await.is_err() {
                        return;
                    }
                    let Ok(mut server) = tokio::net::TcpStream::connect(to).await else { return };
                    // The SSLRequest: length 8, code 80877103.
                    if first != [0, 0, 0, 8, 4, 210, 22, 47] {
                        let _ = server.write_all(&first).await;
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        return;
                    }
                    match tls {
                        Some(config) => {
                            if client.write_all(b"S").await.is_err() {
                                return;
                            }
                            let Ok(mut secured) = tokio_rustls::TlsAcceptor::from(config).accept(client).await else {
                                return;
                            };
                            let _ = tokio::io::copy_bidirectional(&mut secured, &mut server).await;
                        }
                        None => {
                            if client.write_all(b"N").await.is_ok() {
                                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                        }
                    }
                });
            }
        });
        TlsFront { addr, _runtime: runtime }
    }
}

/// A CA (its certificate as PEM), and a server configuration for `localhost` signed by it.
pub fn tls_for_localhost() -> (String, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    (ca.pem(), Arc::new(config))
}
