//! The audit log: a hash-chained JSON Lines file with one record per event,
//! its verifier, and the masking applied to values before they are logged.
//!
//! # Job
//!
//! The proxy writes every decision here *before* it forwards anything
//! (DESIGN.md, "Audit log"). [`AuditLog::append`] returns only once the record
//! is written; any [`AuditError`] means the record is not in the log and the
//! call must be denied (fail closed). `mcp-firewall audit verify FILE` runs
//! [`verify_file`], which names the first record that breaks the chain.
//!
//! # Record format
//!
//! One canonical JSON object per line ([`canonical_json`]: keys sorted by byte
//! order, no whitespace), ending in `\n`. The caller's fields plus `seq` (1, 2,
//! ...), `ts` (RFC 3339 UTC, milliseconds), `event`, `prev` (the previous
//! record's `hash`, or `"sha256:"` + 64 zeros for the first) and `hash`
//! (`sha256_tagged(canonical_json(record without "hash"))`):
//!
//! ```text
//! {"decision_id":"d-1","event":"call.decided","hash":"sha256:…","prev":"sha256:000…000","result":"allow","seq":1,"ts":"2026-11-22T10:00:00.123Z"}
//! ```
//!
//! # Invariants
//!
//! - one chain however many writers (each record written under an exclusive
//!   advisory lock, continuing from whatever record is last), chain state
//!   advanced only after a successful write, a damaged tail refused;
//! - every line is its own canonical form, so the verifier can catch any byte
//!   change, not only changes that alter the parsed value;
//! - truncating records off the end is NOT detectable from the file alone:
//!   anchor [`VerifySummary::head`] elsewhere (see [`verify`]).
//!
//! # Modules
//!
//! | module | job |
//! |---|---|
//! | [`canonical`] | canonical JSON and `sha256:` hashes |
//! | [`checkpoint`] | signed checkpoints of the chain's head, and their verifier |
//! | `record` | the record fields, sealing a record, checking one line |
//! | [`writer`] | [`AuditLog`]: open/resume, append |
//! | `durability` | group commit: the `fsync` thread, [`Pending`] records |
//! | [`verify`] | re-walk the chain, report the first break |
//! | [`mod@mask`] | replace secret values by key name before logging |

pub mod canonical;
pub mod checkpoint;
mod durability;
mod error;
pub mod mask;
mod record;
pub mod sink;
pub mod verify;
pub mod writer;

#[cfg(test)]
mod tests;

pub use canonical::{Canonical, canonical_digest, canonical_json, sha256_tagged};
pub use checkpoint::{CheckpointReport, CheckpointSettings, CheckpointSigner, verify_checkpoints};
pub use durability::Pending;
pub use error::AuditError;
pub use mask::{DEFAULT_MASKED_FIELDS, MASK, MaskRules, mask, mask_owned};
pub use record::{GENESIS_HASH, MAX_RECORD_BYTES};
pub use verify::{VerifyError, VerifySummary, verify_file, verify_file_hashes, verify_reader};
pub use writer::{AuditLog, AuditReceipt, FsyncMode};
