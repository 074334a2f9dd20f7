//! Signed checkpoints of the audit chain: what makes the log hold up against
//! someone who can write the log file.
//!
//! The hash chain alone catches an edited record, but not one that was
//! edited and then re-chained (every later hash recomputed), nor records cut
//! off the end. A checkpoint is the chain's head at one moment, signed with
//! an Ed25519 key the log's writer holds and the log's editor does not:
//! afterwards, the log must still have that record with that hash.
//!
//! # Format (one JSON object per line of the checkpoint file)
//!
//! ```text
//! {"head":"sha256:…","key":"SHA256:…","n":3,"seq":2000,"sig":"…","time":"2026-12-04T05:30:00.000Z"}
//! ```
//!
//! - `n`: 1 for the first checkpoint of the file, then 2, 3, ... (a gap
//!   means a checkpoint was removed);
//! - `seq`: the last record covered (the log's record count then);
//! - `head`: that record's `hash`;
//! - `time`: when it was signed (RFC 3339 UTC, milliseconds);
//! - `key`: the signing key's OpenSSH SHA-256 fingerprint;
//! - `sig`: standard Base64 (with padding) of the raw 64-byte Ed25519
//!   signature over the bytes `mcp-firewall audit checkpoint v1\n` followed
//!   by the object's other five members as compact JSON with sorted keys:
//!   `{"head":…,"key":…,"n":…,"seq":…,"time":…}`.
//!
//! A checkpoint is written only after the records it covers are on disk
//! (`fsync`), under the log's write lock (so checkpoints follow the chain's
//! order whoever writes), and the checkpoint file is synced too.
//!
//! # Honest limits
//!
//! Whoever can read the signing key can sign anything: keep it out of reach
//! of the agent (another OS user, or a file descriptor handed over at start,
//! e.g. `--audit-signing-key /dev/fd/3`). Records written after the last
//! checkpoint, and checkpoints cut off the end of their own file together
//! with the records they covered, are not detectable here: ship checkpoints
//! elsewhere as well if that matters; `time` shows how fresh the last is.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use signature::Signer as _;
use ssh_key::{Algorithm, HashAlg, PrivateKey, PublicKey};

use super::canonical::canonical_json;

/// What the signature covers comes after these bytes.
pub const DOMAIN: &[u8] = b"mcp-firewall audit checkpoint v1\n";
/// Default: a checkpoint every this many records ...
pub const DEFAULT_EVERY_RECORDS: u64 = 1000;
/// ... and every this many seconds when records were written.
pub const DEFAULT_EVERY_SECONDS: u64 = 60;
/// How much of the checkpoint file's end is read to find its last line.
const TAIL_BYTES: u64 = 4096;

/// `[audit] signing_key`, `checkpoints`, `checkpoint_every_records`,
/// `checkpoint_every_seconds` (and `--audit-signing-key`,
/// `--audit-checkpoints`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointSettings {
    /// OpenSSH Ed25519 private key (unencrypted).
    pub key: PathBuf,
    /// The checkpoint file (JSON Lines).
    pub path: PathBuf,
    /// A checkpoint when a record's `seq` is a multiple of this (0: never).
    pub every_records: u64,
    /// A checkpoint this often while records are being written.
    pub every: Duration,
}

impl CheckpointSettings {
    /// The defaults for `key`, with the checkpoint file beside the log.
    pub fn beside(log: &Path, key: PathBuf) -> CheckpointSettings {
        CheckpointSettings {
            key,
            path: default_path(log),
            every_records: DEFAULT_EVERY_RECORDS,
            every: Duration::from_secs(DEFAULT_EVERY_SECONDS),
        }
    }
}

/// The checkpoint file of the log at `log` when none is named: `LOG.checkpoints`.
pub fn default_path(log: &Path) -> PathBuf {
    let mut path = log.as_os_str().to_owned();
    path.push(".checkpoints");
    PathBuf::from(path)
}

/// One line of the checkpoint file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub n: u64,
    pub seq: u64,
    pub head: String,
    pub time: String,
    pub key: String,
    pub sig: String,
}

impl Checkpoint {
    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let body = json!({
            "head": self.head, "key": self.key, "n": self.n, "seq": self.seq, "time": self.time,
        });
        let mut bytes = DOMAIN.to_vec();
        bytes.extend_from_slice(canonical_json(&body).as_bytes());
        bytes
    }

    fn line(&self) -> String {
        let mut line = canonical_json(&serde_json::to_value(self).expect("plain fields"));
        line.push('\n');
        line
    }
}

/// Signs checkpoints into the checkpoint file.
pub struct CheckpointSigner {
    key: PrivateKey,
    fingerprint: String,
    settings: CheckpointSettings,
}

/// Why checkpoints could not be set up or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("audit signing key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("audit checkpoint file {path}: {source}")]
    File { path: PathBuf, source: io::Error },
}

impl CheckpointSigner {
    /// Load the key (an unencrypted OpenSSH Ed25519 private key).
    pub fn load(settings: CheckpointSettings) -> Result<CheckpointSigner, CheckpointError> {
        let bad = |reason: String| CheckpointError::Key {
            path: settings.key.clone(),
            reason,
        };
        let text = std::fs::read_to_string(&settings.key).map_err(|e| bad(e.to_string()))?;
        let key = PrivateKey::from_openssh(text.trim()).map_err(|e| {
            bad(format!(
                "not an OpenSSH private key ({e}); make one with `ssh-keygen -t ed25519 -N '' -f FILE`"
            ))
        })?;
        if key.is_encrypted() {
            return Err(bad(
                "is encrypted; the firewall needs it without a passphrase".into(),
            ));
        }
        if key.algorithm() != Algorithm::Ed25519 {
            return Err(bad(format!("is {}, not Ed25519", key.algorithm())));
        }
        warn_if_readable_by_others(&settings.key);
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        Ok(CheckpointSigner {
            key,
            fingerprint,
            settings,
        })
    }

    pub fn settings(&self) -> &CheckpointSettings {
        &self.settings
    }

    /// Whether writing record `seq` calls for a checkpoint.
    pub fn due(&self, seq: u64) -> bool {
        self.settings.every_records > 0 && seq.is_multiple_of(self.settings.every_records)
    }

    /// The last checkpoint in the file, if any.
    pub fn last(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        let file = match File::open(&self.settings.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.file_err(e)),
        };
        last_line(file)
            .map_err(|e| self.file_err(e))?
            .map(|line| {
                serde_json::from_str(&line).map_err(|e| {
                    self.file_err(io::Error::other(format!(
                        "last line is not a checkpoint: {e}"
                    )))
                })
            })
            .transpose()
    }

    /// Sign a checkpoint of `(seq, head)` and append it, unless the last one
    /// already covers `seq`. The caller holds the log's write lock and has
    /// synced the records up to `seq`.
    pub fn write(&self, seq: u64, head: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        let last = self.last()?;
        if last.as_ref().is_some_and(|l| l.seq >= seq) {
            return Ok(None);
        }
        let mut checkpoint = Checkpoint {
            n: last.map_or(1, |l| l.n + 1),
            seq,
            head: head.to_string(),
            time: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            key: self.fingerprint.clone(),
            sig: String::new(),
        };
        let signature: ssh_key::Signature =
            self.key
                .try_sign(&checkpoint.signed_bytes())
                .map_err(|e| CheckpointError::Key {
                    path: self.settings.key.clone(),
                    reason: format!("signing failed: {e}"),
                })?;
        checkpoint.sig = base64::engine::general_purpose::STANDARD.encode(signature.as_bytes());
        let mut file = super::writer::create_private(&self.settings.path, false)
            .map_err(|e| self.file_err(e))?;
        file.write_all(checkpoint.line().as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| self.file_err(e))?;
        Ok(Some(checkpoint))
    }

    /// Whether the last checkpoint is older than `age` (or there is none).
    pub fn stale(&self, age: Duration) -> Result<bool, CheckpointError> {
        let Some(last) = self.last()? else {
            return Ok(true);
        };
        let signed = DateTime::parse_from_rfc3339(&last.time).map(|t| t.with_timezone(&Utc));
        Ok(signed.map_or(true, |t| {
            Utc::now()
                .signed_duration_since(t)
                .to_std()
                .unwrap_or_default()
                >= age
        }))
    }

    fn file_err(&self, source: io::Error) -> CheckpointError {
        CheckpointError::File {
            path: self.settings.path.clone(),
            source,
        }
    }
}

/// A key file others than its owner can read is a key an agent with another
/// account could use; one the owner can read is one an agent running as the
/// firewall's own user can use (see the module's "Honest limits").
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(key = %path.display(),
            "the audit signing key is readable by other users; chmod 600 it (better: keep it \
             where the agent's user cannot read it)");
    }
}

/// The last complete line of `file`, without its `\n`.
fn last_line(mut file: File) -> io::Result<Option<String>> {
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = String::new();
    file.read_to_string(&mut tail)?;
    Ok(tail
        .trim_end_matches('\n')
        .rsplit('\n')
        .next()
        .filter(|l| !l.is_empty())
        .map(str::to_owned))
}

/// What `audit verify --checkpoints` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointReport {
    pub checkpoints: u64,
    /// The last checkpoint, if any: its `seq` and `time`.
    pub last: Option<(u64, String)>,
    pub key: String,
}

/// Check the checkpoints in `path` against the log's record hashes
/// (`hashes[i]` is the hash of record `seq = i + 1`), signed by `public_key`
/// (an OpenSSH public key file). The error names the first divergence.
pub fn verify_checkpoints(
    hashes: &[String],
    path: &Path,
    public_key: &Path,
) -> Result<CheckpointReport, String> {
    let text = std::fs::read_to_string(public_key)
        .map_err(|e| format!("public key {}: {e}", public_key.display()))?;
    let key = PublicKey::from_openssh(text.trim()).map_err(|e| {
        format!(
            "public key {}: not an OpenSSH public key ({e})",
            public_key.display()
        )
    })?;
    if key.algorithm() != Algorithm::Ed25519 {
        return Err(format!("public key {}: not Ed25519", public_key.display()));
    }
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("checkpoint file {}: {e}", path.display()))?;
    let mut last: Option<Checkpoint> = None;
    let mut count = 0;
    for (i, line) in text.lines().enumerate() {
        let at = format!("checkpoint file line {}", i + 1);
        let cp: Checkpoint =
            serde_json::from_str(line).map_err(|e| format!("{at}: not a checkpoint ({e})"))?;
        if cp.key != fingerprint {
            return Err(format!("{at}: signed by {}, not by {fingerprint}", cp.key));
        }
        let sig = base64::engine::general_purpose::STANDARD
            .decode(&cp.sig)
            .ok()
            .and_then(|bytes| ssh_key::Signature::new(Algorithm::Ed25519, bytes).ok())
            .ok_or_else(|| format!("{at}: `sig` is not an Ed25519 signature"))?;
        signature::Verifier::verify(key.key_data(), &cp.signed_bytes(), &sig).map_err(|_| {
            format!(
                "{at}: bad signature (forged or altered checkpoint n {})",
                cp.n
            )
        })?;
        let expected_n = last.as_ref().map_or(1, |l| l.n + 1);
        if cp.n != expected_n {
            return Err(format!(
                "{at}: checkpoint n {} where n {expected_n} was expected (checkpoints removed or reordered)",
                cp.n
            ));
        }
        if let Some(prev) = &last
            && cp.seq < prev.seq
        {
            return Err(format!("{at}: seq {} goes back from {}", cp.seq, prev.seq));
        }
        let covered = last.as_ref().map_or(0, |l| l.seq);
        match usize::try_from(cp.seq)
            .ok()
            .and_then(|s| s.checked_sub(1))
            .and_then(|i| hashes.get(i))
        {
            None => {
                return Err(format!(
                    "the log ends at seq {} but checkpoint n {} (signed {}) covers seq {}: \
                     records were cut off the end",
                    hashes.len(),
                    cp.n,
                    cp.time,
                    cp.seq
                ));
            }
            Some(hash) if *hash != cp.head => {
                return Err(format!(
                    "the log diverges from checkpoint n {} (signed {}): record seq {} is not the \
                     one signed; the log was altered after seq {covered} (the last signed record \
                     that still matches) and at or before seq {} (records edited, removed or \
                     inserted and the chain recomputed)",
                    cp.n, cp.time, cp.seq, cp.seq
                ));
            }
            Some(_) => {}
        }
        count += 1;
        last = Some(cp);
    }
    Ok(CheckpointReport {
        checkpoints: count,
        last: last.map(|l| (l.seq, l.time)),
        key: fingerprint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signed_bytes_are_the_domain_and_sorted_compact_json() {
        let cp = Checkpoint {
            n: 2,
            seq: 10,
            head: "sha256:ab".into(),
            time: "2026-12-04T05:30:00.000Z".into(),
            key: "SHA256:x".into(),
            sig: "ignored".into(),
        };
        assert_eq!(
            String::from_utf8(cp.signed_bytes()).unwrap(),
            "mcp-firewall audit checkpoint v1\n{\"head\":\"sha256:ab\",\"key\":\"SHA256:x\",\"n\":2,\"seq\":10,\"time\":\"2026-12-04T05:30:00.000Z\"}"
        );
    }

    #[test]
    fn the_last_line_is_found_past_the_tail_window() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp");
        let long = "x".repeat(5000);
        std::fs::write(&path, format!("{long}\nfirst\nsecond\n")).unwrap();
        assert_eq!(
            last_line(File::open(&path).unwrap()).unwrap().as_deref(),
            Some("second")
        );
        std::fs::write(&path, "").unwrap();
        assert_eq!(last_line(File::open(&path).unwrap()).unwrap(), None);
    }
}
