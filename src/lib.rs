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
//! | `domain`  | records, validation, typed refusals; rules as pure functions | std, `serde`, `jiff`, crypto |
//! | `engine`  | units of work: read, a `domain` rule decides, write, commit; the `Engine` seam, the sled engine (one writer, a write-ahead log, the working set in memory, sled checkpointed behind) | `domain`, `sled`, `bincode`, `imbl`, `crc32fast` |
//! | `service` | one SIP session: a message to an engine operation, its receipt to a reply in the terminal's language | `proto`, `domain`, `engine` (the trait) |
//! | `net`     | sockets, TLS, limits, shutdown, metrics; SIP2 I/O     | `service`, `proto`, `engine`, tokio, rustls |
//! | `tools`   | vendor tools: client connection, conformance, load    | `proto`, `net`, `service`, tokio, rustls |
//! | `cli`     | the `sip2d` command line, the admin API, e-mail        | everything above, `clap`       |
//!
//! Nothing outside `engine` opens the store. The service layer holds each connection's protocol
//! state (`service::Session`: login, error detection, resend, duplicates) without touching a
//! socket; `net` feeds it frames and awaits the engine's answers.

pub mod proto;

#[cfg(feature = "register")]
pub mod domain;
#[cfg(feature = "register")]
pub mod engine;
#[cfg(feature = "register")]
pub mod service;

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
