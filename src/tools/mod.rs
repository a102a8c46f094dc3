//! Tools for vendors and operators: a SIP2 client connection, the conformance checker and the
//! load generator. They talk to any SIP2 server over sockets, so they sit beside `net`.

pub mod bench;
pub mod conform;
pub mod conn;
pub mod logins;
