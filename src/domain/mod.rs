//! The patron register's domain: records, validation, secrets and circulation rules. It knows
//! nothing of SIP, sockets or storage.

// Amounts in minor units are written major_minor: `27_50` is 27.50.
#![allow(clippy::inconsistent_digit_grouping)]

pub mod profile;
pub mod records;
pub mod refusal;
pub mod rules;
pub mod secret;
pub mod staff;
pub mod validate;

pub use profile::Profile;
pub use records::*;
pub use refusal::{AsItStands, Refusal};
pub use staff::{Role, Staff};
