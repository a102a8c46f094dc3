//! A SIP2 client connection (plain or TLS) for the vendor tools: sends typed messages with
//! the chosen trailer, terminator and encoding, and reads frames back.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::proto::{self, Encoding, FrameDecoder, FrameEvent, Message, Seal, Sequence, Terminator};

/// How frames are written: trailer, terminator, text encoding.
#[derive(Clone, Copy, Debug)]
pub struct Wire {
    /// Append `AY`/`AZ` (the sequence number advances per message).
    pub checksums: bool,
    pub terminator: Terminator,
    pub encoding: Encoding,
}

impl Default for Wire {
    fn default() -> Wire {
        Wire { checksums: true, terminator: Terminator::Cr, encoding: Encoding::Utf8 }
    }
}

/// TLS settings for a client.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    /// CA certificates (PEM) that may sign the server's certificate.
    pub ca: Option<PathBuf>,
    /// A client certificate and key (PEM) for mutual TLS.
    pub cert: Option<(PathBuf, PathBuf)>,
    /// Accept any server certificate (testing only).
    pub insecure: bool,
    /// The name to verify the certificate against (default: the host).
    pub server_name: Option<String>,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One connection to a SIP2 server.
pub struct SipConn {
    io: Box<dyn Stream>,
    buf: BytesMut,
    decoder: FrameDecoder,
    next: Sequence,
    pub wire: Wire,
}

#[derive(Debug)]
struct AnyCert;

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// A rustls client configuration for these settings.
pub fn tls_config(tls: &ClientTls) -> io::Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?;
    let builder = if tls.insecure {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCert))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        let Some(ca) = &tls.ca else {
            return Err(invalid(
                "TLS needs --ca FILE (the CA that signed the server's certificate) or --insecure".into(),
            ));
        };
        for c in CertificateDer::pem_file_iter(ca).map_err(|e| invalid(format!("{}: {e}", ca.display())))? {
            roots.add(c.map_err(|e| invalid(format!("{}: {e}", ca.display())))?).map_err(|e| invalid(e.to_string()))?;
        }
        builder.with_root_certificates(roots)
    };
    let config = match &tls.cert {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| invalid(format!("{}: {e}", cert.display())))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid(format!("{}: {e}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid(format!("{}: {e}", key.display())))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| invalid(e.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

impl SipConn {
    /// Connects to `host:port`, over TLS when `tls` is given, within `timeout`.
    pub async fn connect(
        host: &str,
        port: u16,
        tls: Option<(&ClientTls, Arc<rustls::ClientConfig>)>,
        wire: Wire,
        timeout: Duration,
    ) -> io::Result<SipConn> {
        let tcp = tokio::time::timeout(timeout, TcpStream::connect((host, port)))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("no connection to {host}:{port}")))??;
        tcp.set_nodelay(true)?;
        let io: Box<dyn Stream> = match tls {
            None => Box::new(tcp),
            Some((settings, config)) => {
                let name = settings.server_name.clone().unwrap_or_else(|| host.to_string());
                let name = ServerName::try_from(name).map_err(|e| invalid(e.to_string()))?;
                let connector = tokio_rustls::TlsConnector::from(config);
                let s = tokio::time::timeout(timeout, connector.connect(name, tcp))
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
                Box::new(s)
            }
        };
        Ok(SipConn::over(io, wire))
    }

    /// A connection over an established stream (used by tests and the in-process responder).
    pub fn over(io: impl AsyncRead + AsyncWrite + Unpin + Send + 'static, wire: Wire) -> SipConn {
        let io: Box<dyn Stream> = Box::new(io);
        SipConn {
            io,
            buf: BytesMut::with_capacity(4096),
            decoder: FrameDecoder::new(64 * 1024),
            next: Sequence::ZERO,
            wire,
        }
    }

    /// Connects to a socket address without TLS.
    pub async fn plain(addr: SocketAddr, wire: Wire) -> io::Result<SipConn> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        Ok(SipConn::over(tcp, wire))
    }

    /// The frame for a message as this connection writes it (advancing the sequence number).
    pub fn frame(&mut self, message: &Message<'_>) -> Bytes {
        let mut out = BytesMut::with_capacity(256);
        let seal = if self.wire.checksums {
            let s = self.next;
            self.next = s.next();
            Seal::Sequenced(s)
        } else {
            Seal::None
        };
        proto::encode_frame(message, &mut out, self.wire.encoding, seal, self.wire.terminator);
        out.freeze()
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await
    }

    /// Sends a message; returns the bytes sent.
    pub async fn send(&mut self, message: &Message<'_>) -> io::Result<Bytes> {
        let f = self.frame(message);
        self.send_raw(&f).await?;
        Ok(f)
    }

    /// The next frame from the server (terminator removed); `None` when it closed.
    pub async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Some(FrameEvent::Frame(f)) => return Ok(Some(f)),
                Some(FrameEvent::Oversize) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "reply longer than 64 KiB"));
                }
                None => {}
            }
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    /// The next frame within `timeout`; `Ok(None)` on close, an error on timeout.
    pub async fn recv_within(&mut self, timeout: Duration) -> io::Result<Option<Bytes>> {
        tokio::time::timeout(timeout, self.recv())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no reply in time"))?
    }

    /// Sends a message and waits for one reply.
    pub async fn ask(&mut self, message: &Message<'_>, timeout: Duration) -> io::Result<Bytes> {
        self.send(message).await?;
        self.recv_within(timeout)
            .await?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection"))
    }
}
