//! sip2d: a SIP2 self-check server, its codec, and tools for library-automation vendors.
//!
//! # Layers
//!
//! Each layer may depend only on the layers named in its row. The protocol layer builds alone
//! (`cargo build --lib --no-default-features`), which CI checks, so that the boundary holds by
//! construction rather than by review.
//!
//! | module    | job                                                   | may depend on                  |
//! |-----------|-------------------------------------------------------|--------------------------------|
//! | `proto`   | bytes <-> typed SIP2 messages: framing, checksums     | `bytes`, `nom`                 |
//! | `domain`  | patrons, items, loans, fees; rules as pure functions  | std, `serde`, `jiff`, crypto   |
//! | `store`   | durable register in sled, in domain terms             | `domain`, `sled`, `bincode`    |
//! | `register`| staff operations: validate, decide, commit, audit     | `domain`, `store`              |
//! | `service` | translates SIP messages to register calls and back    | `proto`, `domain`, `register`, `store` |
//! | `net`     | sockets, TLS, limits, shutdown, metrics; SIP2 I/O     | `service`, `proto`, `register`, tokio, rustls |
//! | `tools`   | vendor tools: client connection, conformance, load    | `proto`, `net`, `service`, tokio, rustls |
//! | `cli`     | the `sip2d` command line, the admin API, e-mail        | everything above, `clap`       |
//!
//! The service layer holds each connection's protocol state (`service::Session`: login, error
//! detection, resend, duplicates) without touching a socket; `net` feeds it frames.

pub mod proto;

#[cfg(feature = "register")]
pub mod domain;
#[cfg(feature = "register")]
pub mod register;
#[cfg(feature = "register")]
pub mod service;
#[cfg(feature = "register")]
pub mod store;

#[cfg(feature = "server")]
pub mod net;
#[cfg(feature = "server")]
pub mod tools;

#[cfg(feature = "cli")]
pub mod cli;

// The README's Rust example runs as a doctest, so it cannot drift from the code.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
