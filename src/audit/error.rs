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
    /// Another writer held the log's lock longer than
    /// [`super::writer::LOCK_WAIT`] (writers hold it for one record).
    #[error("audit log {} is locked by another writer that did not let go", .path.display())]
    InUse { path: PathBuf },
    /// The caller's record is not acceptable (not an object, sets a reserved
    /// field, too large). A caller bug, not an IO problem, but still a deny.
    #[error("invalid audit record: {0}")]
    InvalidBody(String),
}
