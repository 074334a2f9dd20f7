//! Failures of the audit log writer.
//!
//! Job: name each way writing the log can fail, with the file in the message.
//! Invariant: the proxy treats every one of these as "deny the call" (fail
//! closed: no audit record, no forwarding), so none of them is ever swallowed.

use std::io;
use std::path::PathBuf;

#[derive(thiserror::Error, Debug)]
pub enum AuditError {
    /// Creating, opening, writing, flushing or syncing the log failed. Also
    /// returned for every append after a failed write that could not be undone.
    #[error("cannot write audit log {}: {source}", .path.display())]
    WriteFailed {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The existing log cannot be continued safely, e.g. its last line is a
    /// torn write. We never start a new chain on top of a damaged one.
    #[error(
        "audit log {} cannot be continued: {reason}; run `mcp-firewall audit verify {}` to find the first bad record",
        .path.display(),
        .path.display()
    )]
    Corrupt { path: PathBuf, reason: String },
    /// Another process (or another `AuditLog` in this one) holds the log open
    /// for writing. Two writers would fork the chain.
    #[error("audit log {} is already open for writing by another writer", .path.display())]
    InUse { path: PathBuf },
    /// The caller's record is not acceptable (not an object, sets a reserved
    /// field, too large). A caller bug, not an IO problem, but still a deny.
    #[error("invalid audit record: {0}")]
    InvalidBody(String),
}
