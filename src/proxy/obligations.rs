//! The policy's `approval` object: who may answer a held call, how many
//! must agree, how long the request stays open, and what silence means.
//!
//! Parsed strictly: a wrong type or an unknown key is an error, and the
//! caller refuses the call (fail closed) rather than guessing.

use std::time::Duration;

use serde_json::{Value, json};

use crate::approval::ApprovalSettings;

/// Upper bound on `timeout_seconds`: an approval is for a call a client is
/// waiting on, not a standing permission.
pub const MAX_APPROVAL_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
/// Upper bound on `max_scope_seconds`: a day of identical calls.
pub const MAX_APPROVAL_SCOPE: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, PartialEq)]
pub struct Obligations {
    /// Who may answer (groups expanded); empty: anyone but the principal.
    pub approvers: Vec<String>,
    pub quorum: u32,
    pub timeout: Duration,
    /// How long an approver may let the approval release identical calls
    /// ("identical calls for N minutes"); zero: this call, once.
    pub max_scope: Duration,
}

impl Obligations {
    pub fn parse(
        value: Option<&Value>,
        settings: &ApprovalSettings,
    ) -> Result<Obligations, String> {
        let mut out = Obligations {
            approvers: Vec::new(),
            quorum: 1,
            timeout: settings.timeout,
            max_scope: Duration::ZERO,
        };
        let Some(value) = value else { return Ok(out) };
        let Some(obj) = value.as_object() else {
            return Err(format!("`approval` must be an object, got {value}"));
        };
        for (key, v) in obj {
            match key.as_str() {
                "approvers" => out.approvers = approvers(v, settings)?,
                "quorum" => {
                    out.quorum = v
                        .as_u64()
                        .filter(|q| (1..=100).contains(q))
                        .ok_or_else(|| {
                            format!("quorum must be an integer from 1 to 100, got {v}")
                        })? as u32
                }
                "timeout_seconds" => {
                    let secs = v.as_u64().filter(|s| *s > 0).ok_or_else(|| {
                        format!("timeout_seconds must be a positive integer, got {v}")
                    })?;
                    out.timeout = Duration::from_secs(secs).min(MAX_APPROVAL_TIMEOUT);
                }
                "max_scope_seconds" => {
                    let secs = v.as_u64().ok_or_else(|| {
                        format!("max_scope_seconds must be a non-negative integer, got {v}")
                    })?;
                    out.max_scope = Duration::from_secs(secs).min(MAX_APPROVAL_SCOPE);
                }
                // Silence never releases a call: the only supported meaning is deny.
                "on_timeout" if v == "deny" => {}
                "on_timeout" => return Err(format!("on_timeout must be \"deny\", got {v}")),
                other => {
                    return Err(format!(
                        "unknown key {other:?} (expected approvers, quorum, timeout_seconds, max_scope_seconds, on_timeout)"
                    ));
                }
            }
        }
        Ok(out)
    }

    /// As shown to approvers.
    pub fn describe(&self) -> Value {
        json!({"approvers": self.approvers, "quorum": self.quorum,
               "timeout_seconds": self.timeout.as_secs(), "on_timeout": "deny",
               "max_scope_seconds": self.max_scope.as_secs()})
    }
}

fn approvers(v: &Value, settings: &ApprovalSettings) -> Result<Vec<String>, String> {
    let list = v
        .as_array()
        .ok_or_else(|| format!("approvers must be an array of names, got {v}"))?;
    let mut names = Vec::new();
    for item in list {
        let name = item
            .as_str()
            .ok_or_else(|| format!("approvers must be strings, got {item}"))?;
        match name.strip_prefix("group:") {
            Some(group) => {
                let members = settings
                    .groups
                    .get(group)
                    .ok_or_else(|| format!("unknown approver group {group:?}"))?;
                names.extend(members.iter().cloned());
            }
            None => names.push(name.to_string()),
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ApprovalSettings {
        let mut s = ApprovalSettings::default();
        s.groups
            .insert("sre".into(), vec!["bob".into(), "carol".into()]);
        s
    }

    #[test]
    fn defaults_without_an_approval_object() {
        let o = Obligations::parse(None, &settings()).unwrap();
        assert_eq!((o.quorum, o.approvers.len()), (1, 0));
        assert_eq!(o.timeout, settings().timeout);
    }

    #[test]
    fn groups_expand_and_fields_are_read() {
        let v = json!({"approvers": ["group:sre", "dave", "bob"], "quorum": 2, "timeout_seconds": 30, "on_timeout": "deny"});
        let o = Obligations::parse(Some(&v), &settings()).unwrap();
        assert_eq!(o.approvers, ["bob", "carol", "dave"]);
        assert_eq!(o.quorum, 2);
        assert_eq!(o.timeout, Duration::from_secs(30));
    }

    #[test]
    fn anything_unexpected_is_an_error() {
        for v in [
            json!("x"),
            json!({"quorum": 0}),
            json!({"quorum": "2"}),
            json!({"approvers": "bob"}),
            json!({"approvers": ["group:nope"]}),
            json!({"timeout_seconds": -1}),
            json!({"on_timeout": "allow"}),
            json!({"approvers_typo": []}),
        ] {
            assert!(Obligations::parse(Some(&v), &settings()).is_err(), "{v}");
        }
    }
}
