//! The register as a command sees it while `sip2d serve` holds it: each operation, query,
//! dry run and export sent to the server's admin socket as data (`admin`), and the answer
//! read back as the engine gave it. The commands print it here; the server runs no command
//! line.

use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::admin::{CheckRequest, FailureBody, OperationRequest, PinKey, QueryRequest, SOCKET};
use crate::engine::{Answer, By, Engine, Error, Line, Observer, Operation, Pending, Query, Receipt, Stats};

/// A connection to a running server's admin socket.
pub struct Remote {
    rt: tokio::runtime::Runtime,
    sender: Mutex<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
    actor: String,
}

impl Remote {
    /// Connects to the server running on `dir`; `None` when none is (no socket, or one a
    /// server that was killed left behind).
    pub fn connect(dir: &Path, actor: &str) -> Result<Option<Remote>> {
        let path = dir.join(SOCKET);
        if !path.exists() {
            return Ok(None);
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let sender = rt.block_on(async {
            let Ok(stream) = tokio::net::UnixStream::connect(&path).await else { return Ok(None) };
            let io = hyper_util::rt::TokioIo::new(stream);
            let (sender, conn) = hyper::client::conn::http1::handshake(io).await.context("the admin socket")?;
            tokio::spawn(conn);
            anyhow::Ok(Some(sender))
        })?;
        Ok(sender.map(|s| Remote { rt, sender: Mutex::new(s), actor: actor.to_string() }))
    }

    /// Sends one request and hands its answer to `read`, on this command's runtime.
    fn exchange<T, F: std::future::Future<Output = Result<T, Error>>>(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        read: impl FnOnce(hyper::Response<hyper::body::Incoming>) -> F,
    ) -> Result<T, Error> {
        let lost = |e: &dyn std::fmt::Display| Error::NotDone(format!("the running server did not answer: {e}").into());
        let mut sender = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        self.rt.block_on(async {
            sender.ready().await.map_err(|e| lost(&e))?;
            let req = hyper::Request::builder()
                .method(method)
                .uri(path)
                .header("host", "localhost")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| lost(&e))?;
            read(sender.send_request(req).await.map_err(|e| lost(&e))?).await
        })
    }

    /// Sends one request and reads the whole answer.
    fn send(&self, method: &str, path: &str, body: Vec<u8>) -> Result<(hyper::StatusCode, Bytes), Error> {
        self.exchange(method, path, body, |res| async move {
            let status = res.status();
            let bytes = res
                .into_body()
                .collect()
                .await
                .map_err(|e| Error::NotDone(format!("the running server did not answer: {e}").into()))?
                .to_bytes();
            Ok((status, bytes))
        })
    }

    /// A JSON request whose success is a `T` and whose failure is a [`FailureBody`].
    fn call<T: DeserializeOwned>(&self, method: &str, path: &str, body: &impl Serialize) -> Result<T, Error> {
        let body = serde_json::to_vec(body).map_err(|e| Error::NotDone(format!("cannot send that: {e}").into()))?;
        let (status, bytes) = self.send(method, path, body)?;
        let unreadable = |e: serde_json::Error| {
            let text = String::from_utf8_lossy(&bytes);
            Error::NotDone(format!("the running server's answer ({status}) is not understood: {e}: {text:.200}").into())
        };
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(unreadable);
        }
        let failed: FailureBody = serde_json::from_slice(&bytes).map_err(unreadable)?;
        Err(failed.failure.into())
    }

    fn actor(&self, by: &By) -> String {
        if by.actor.is_empty() { self.actor.clone() } else { by.actor.clone() }
    }
}

impl Engine for Remote {
    fn run(&self, operation: Operation, by: By) -> Pending<Receipt> {
        let req = OperationRequest { actor: self.actor(&by), now: Some(by.now), operation };
        Pending::ready(self.call("POST", "/v1/operations", &req))
    }

    fn query(&self, query: Query) -> Pending<Answer> {
        Pending::ready(self.call("POST", "/v1/queries", &QueryRequest { query }))
    }

    fn check(&self, operations: Vec<Operation>, by: By) -> Pending<Vec<Result<Receipt, Error>>> {
        let req = CheckRequest { actor: self.actor(&by), now: Some(by.now), operations };
        let all: Result<Vec<Result<Receipt, super::admin::Failure>>, Error> = self.call("POST", "/v1/check", &req);
        Pending::ready(all.map(|all| all.into_iter().map(|r| r.map_err(Error::from)).collect()))
    }

    /// Reads the server's export as it streams, a line at a time: a register larger than
    /// memory goes through.
    fn export(&self, sink: &mut dyn FnMut(&Line) -> std::io::Result<()>) -> Result<usize, Error> {
        let lost = |e: &dyn std::fmt::Display| Error::NotDone(format!("the running server's export: {e}").into());
        self.exchange("GET", "/v1/export", Vec::new(), |res| async move {
            let status = res.status();
            let mut body = res.into_body();
            if !status.is_success() {
                let bytes = body.collect().await.map_err(|e| lost(&e))?.to_bytes();
                return Err(lost(&format!("refused ({status}): {}", String::from_utf8_lossy(&bytes))));
            }
            let (mut pending, mut n) = (Vec::new(), 0usize);
            let mut take = |line: &[u8], n: &mut usize| -> Result<(), Error> {
                if line.iter().all(u8::is_ascii_whitespace) {
                    return Ok(());
                }
                let line: Line = serde_json::from_slice(line).map_err(|e| lost(&format!("line {}: {e}", *n + 1)))?;
                sink(&line).map_err(|e| Error::NotDone(e.to_string().into()))?;
                *n += 1;
                Ok(())
            };
            while let Some(frame) = body.frame().await {
                let Ok(data) = frame.map_err(|e| lost(&e))?.into_data() else { continue };
                pending.extend_from_slice(&data);
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    take(&line, &mut n)?;
                }
            }
            take(&pending, &mut n)?;
            Ok(n)
        })
    }

    fn link_token(&self, serial: u64) -> Result<String, Error> {
        self.call::<super::admin::LinkToken>("GET", &format!("/v1/link-token/{serial}"), &()).map(|t| t.token)
    }

    fn pin_key_fingerprint(&self) -> Result<String, Error> {
        self.call::<PinKey>("GET", "/v1/pin-key", &()).map(|k| k.fingerprint)
    }

    /// The server's own counters are its metrics' business; a command keeps none.
    fn stats(&self) -> Stats {
        Stats::default()
    }

    fn healthy(&self) -> bool {
        true
    }

    fn observe(&self, _observer: Observer) {}
}
