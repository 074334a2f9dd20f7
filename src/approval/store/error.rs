//! The store's failures. An answer that breaks a rule is an
//! [`AnswerRejection`] with a message written for the approver who sent it;
//! everything else is a [`StoreError`] the proxy turns into a deny (fail
//! closed).

use std::path::PathBuf;

use crate::approval::model::Status;

#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    /// The data directory could not be created.
    #[error("cannot create approval data directory {}: {source}", .path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The database could not be opened or prepared (pragmas, schema).
    #[error("cannot open approval database {}: {source}", .path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// SQLite would not switch the database to WAL mode (needed so the CLI
    /// and the firewall can use it at the same time).
    #[error("approval database {} cannot use WAL journaling (journal_mode is {journal})", .path.display())]
    NotWal { path: PathBuf, journal: String },
    /// The database was written by a newer mcp-firewall; we do not guess at
    /// a schema we do not know.
    #[error(
        "approval database {} has schema version {found}; this mcp-firewall understands up to {supported}",
        .path.display()
    )]
    UnsupportedSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// Any other SQLite failure (including a busy database past the timeout).
    #[error("approval database error: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A PostgreSQL failure: the server unreachable, a query that timed out,
    /// a statement it refused.
    #[error("approval database error: {0}")]
    Postgres(String),
    /// A stored value this build could not have written.
    #[error("approval database holds a value it cannot read: {0}")]
    Corrupt(String),
    /// A new approval request that cannot be honoured as written.
    #[error("invalid approval request: {0}")]
    InvalidApproval(String),
    /// The requester has as many pending requests as it may have.
    #[error(
        "{principal} already has {pending} approval requests pending (the limit is {limit}); \
         wait until approvers answer them or they expire"
    )]
    TooManyPending {
        principal: String,
        pending: usize,
        limit: usize,
    },
    /// No approval with this id.
    #[error("no approval request with id {0:?}")]
    NotFound(String),
    /// The answer broke one of the answering rules; nothing was recorded.
    #[error("answer rejected: {0}")]
    AnswerRejected(AnswerRejection),
}

/// Why an answer was refused. Each reason is its own variant so channels can
/// map them to precise responses (the endpoint's HTTP status, the CLI's exit).
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub enum AnswerRejection {
    #[error("this request is already {0} and no longer takes answers")]
    NotPending(Status),
    #[error("this request has expired and no longer takes answers")]
    Expired,
    #[error("you made this request, so you cannot answer it; ask another approver")]
    SelfApproval,
    #[error("you are not one of the approvers for this request")]
    NotAnApprover,
    #[error("you have already answered this request")]
    AlreadyAnswered,
    #[error("an answer needs a reason; say why you approve or deny")]
    MissingReason,
    #[error("the approver's name is not acceptable: {0}")]
    BadIdentity(String),
    #[error("the answer's signature does not count: {0}")]
    BadProof(String),
    #[error(
        "an answer must be signed by the approver's registered key (or a configured bot secret)"
    )]
    Unsigned,
    #[error("an answer needs the approver's identity")]
    MissingApprover,
}

/// Why a name that is not an acceptable identity cannot answer.
impl From<crate::identity::IdentityError> for AnswerRejection {
    fn from(e: crate::identity::IdentityError) -> AnswerRejection {
        match e {
            crate::identity::IdentityError::Empty => AnswerRejection::MissingApprover,
            other => AnswerRejection::BadIdentity(other.to_string()),
        }
    }
}

impl From<AnswerRejection> for StoreError {
    fn from(r: AnswerRejection) -> StoreError {
        StoreError::AnswerRejected(r)
    }
}
