//! The audit log verifier behind `mcp-firewall audit verify FILE`.
//!
//! Job: re-walk the whole chain and name the first line that breaks it, with a
//! specific reason. Each line must:
//! 1. parse as a JSON object (else `unparsable`);
//! 2. be byte-for-byte its own canonical form (else `not canonical`), so any
//!    byte change, even whitespace or key order, is caught;
//! 3. carry `seq`, `ts`, `event`, `prev`, `hash` (else `missing field`);
//! 4. have a `hash` equal to the hash of its content (else `hash mismatch`);
//! 5. have `seq` one more than the previous record's, 1 for the first (else
//!    `missing record` or `out of order`);
//! 6. have `prev` equal to the previous record's `hash`, the zero hash for the
//!    first (else `chain broken`): this catches a record that was edited and
//!    then re-hashed, at the record after it;
//! 7. end with `\n` (else `torn write`).
//!
//! An empty file is a valid log of 0 records.
//!
//! Honest limit: removing records from the END of the log leaves a shorter
//! chain that is still valid, so truncation cannot be detected from the file
//! alone. [`VerifySummary::head`] is the hash of the last record; an operator
//! who wants to detect truncation must anchor it somewhere else (another host,
//! a ticket, a transparency log) and compare later. The same holds for
//! replacing the whole file with a freshly generated chain.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use serde_json::Value;

use super::record::{GENESIS_HASH, MAX_RECORD_BYTES, SEQ, check_line};

/// A chain that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySummary {
    /// Number of records.
    pub records: u64,
    /// `hash` of the last record (the zero hash for an empty log): anchor this
    /// elsewhere to detect truncation later.
    pub head: String,
}

/// The first place the chain breaks. `line` is 1-based; `line == 0` means the
/// file as a whole (it could not be opened).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyError {
    pub line: u64,
    pub seq: Option<u64>,
    pub reason: String,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "line {}", self.line)?;
            if let Some(seq) = self.seq {
                write!(f, " (seq {seq})")?;
            }
            f.write_str(": ")?;
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for VerifyError {}

/// Verify the log at `path`.
pub fn verify_file(path: &Path) -> Result<VerifySummary, VerifyError> {
    let file = File::open(path).map_err(|e| VerifyError {
        line: 0,
        seq: None,
        reason: format!("cannot open {}: {e}", path.display()),
    })?;
    verify_reader(BufReader::new(file))
}

/// Verify the log at `path`, and return every record's hash in `seq` order
/// (what signed checkpoints are checked against).
pub fn verify_file_hashes(path: &Path) -> Result<(VerifySummary, Vec<String>), VerifyError> {
    let file = File::open(path).map_err(|e| VerifyError {
        line: 0,
        seq: None,
        reason: format!("cannot open {}: {e}", path.display()),
    })?;
    let mut hashes = Vec::new();
    let summary = walk(BufReader::new(file), |hash| hashes.push(hash.to_string()))?;
    Ok((summary, hashes))
}

/// Verify a log read from `r`.
pub fn verify_reader(r: impl BufRead) -> Result<VerifySummary, VerifyError> {
    walk(r, |_| {})
}

/// Verify a log read from `r`, handing each record's hash to `each`.
fn walk(r: impl BufRead, mut each: impl FnMut(&str)) -> Result<VerifySummary, VerifyError> {
    let mut lines = Lines {
        reader: r,
        line_no: 0,
    };
    let mut records: u64 = 0;
    let mut prev_hash = GENESIS_HASH.to_string();
    while let Some((line_no, line)) = lines.next_line()? {
        let bad = |seq, reason: String| VerifyError {
            line: line_no,
            seq,
            reason,
        };
        let head = check_line(&line).map_err(|f| bad(f.seq, f.reason))?;
        let expected = records + 1;
        if head.seq > expected {
            // A record is missing here, unless the expected one comes right
            // after: then two records were swapped.
            let reason = match lines.next_line() {
                Ok(Some((_, next))) if seq_of(&next) == Some(expected) => {
                    format!("out of order: seq {} comes before seq {expected}", head.seq)
                }
                _ => format!(
                    "missing record: expected seq {expected}, found {} (records removed)",
                    head.seq
                ),
            };
            return Err(bad(Some(head.seq), reason));
        }
        if head.seq < expected {
            return Err(bad(
                Some(head.seq),
                format!(
                    "out of order: expected seq {expected}, found {} \
                     (record duplicated, inserted or moved)",
                    head.seq
                ),
            ));
        }
        if head.prev != prev_hash {
            return Err(bad(
                Some(head.seq),
                "chain broken: `prev` does not match the previous record's hash \
                 (the previous record was replaced, or edited and re-hashed)"
                    .into(),
            ));
        }
        records = head.seq;
        each(&head.hash);
        prev_hash = head.hash;
    }
    Ok(VerifySummary {
        records,
        head: prev_hash,
    })
}

/// `seq` of a line, if it parses far enough to have one.
fn seq_of(line: &[u8]) -> Option<u64> {
    serde_json::from_slice::<Value>(line)
        .ok()?
        .get(SEQ)?
        .as_u64()
}

/// Complete lines (without `\n`) of a reader, each at most
/// [`MAX_RECORD_BYTES`] long so a damaged file cannot make us allocate without
/// bound. A final line without `\n` is reported as a torn write.
struct Lines<R> {
    reader: R,
    line_no: u64,
}

impl<R: BufRead> Lines<R> {
    fn next_line(&mut self) -> Result<Option<(u64, Vec<u8>)>, VerifyError> {
        self.line_no += 1;
        let line_no = self.line_no;
        let bad = |seq, reason: String| VerifyError {
            line: line_no,
            seq,
            reason,
        };
        let mut buf = Vec::new();
        // Room for the longest allowed record, its `\n`, and one byte more to
        // tell "too long" from "exactly at the limit".
        let limit = MAX_RECORD_BYTES as u64 + 2;
        (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut buf)
            .map_err(|e: io::Error| bad(None, format!("read error: {e}")))?;
        if buf.is_empty() {
            return Ok(None);
        }
        let complete = buf.last() == Some(&b'\n');
        if complete {
            buf.pop();
        }
        if buf.len() > MAX_RECORD_BYTES {
            return Err(bad(
                None,
                format!("line longer than the {MAX_RECORD_BYTES}-byte record limit"),
            ));
        }
        if !complete {
            return Err(bad(
                seq_of(&buf),
                "torn write: the last line has no trailing newline".into(),
            ));
        }
        Ok(Some((line_no, buf)))
    }
}
