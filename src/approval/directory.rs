//! The approver directory: one entry per person who may answer held calls,
//! with every way they can prove who they are (`[[approver]]` in the config).
//!
//! ```toml
//! [[approver]]
//! name = "bob"
//! keys = ["ssh-ed25519 AAAA... bob@laptop"]   # signs CLI answers
//! oidc_subject = "248289761001"               # console sign-in (or `email`)
//! slack_user = "U0BOB"                        # Slack buttons
//! groups = ["sre"]                            # `group:sre` in obligations
//! ```
//!
//! # Invariants
//!
//! - Names are canonical [`Identity`]s, unique in the directory (look-alikes
//!   count as the same name); a Slack user id, an OIDC subject and an email
//!   belong to at most one approver, so an identity provider's word maps to
//!   exactly one person or to nobody.
//! - Keys are merged into the `allowed_signers` registry under the entry's
//!   name ([`super::approvers::ApproverRegistry`]); the `--approvers` file
//!   keeps working beside the directory.
//! - An approver with any identity here (key, OIDC, Slack) answers only
//!   through it: a bot holding a webhook secret cannot answer in their name.

use std::collections::BTreeMap;

use crate::identity::Identity;

/// One approver, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEntry {
    pub name: Identity,
    /// OpenSSH public key lines (`ssh-ed25519 AAAA... [comment]`).
    pub keys: Vec<String>,
    pub oidc_subject: Option<String>,
    /// Matched against a verified `email` claim (case-insensitively).
    pub email: Option<String>,
    pub slack_user: Option<String>,
    pub groups: Vec<String>,
}

/// Every approver, with lookups by the identities providers vouch for.
#[derive(Debug, Clone, Default)]
pub struct ApproverDirectory {
    entries: Vec<DirectoryEntry>,
}

impl ApproverDirectory {
    /// Checks uniqueness of names and identities; the error names the field.
    pub fn new(entries: Vec<DirectoryEntry>) -> Result<ApproverDirectory, (usize, String)> {
        for (i, entry) in entries.iter().enumerate() {
            for earlier in &entries[..i] {
                let clash = if earlier.name.same_person(&entry.name) {
                    Some(format!("name {:?}", entry.name.as_str()))
                } else if entry.slack_user.is_some() && earlier.slack_user == entry.slack_user {
                    Some(format!(
                        "slack_user {:?}",
                        entry.slack_user.as_deref().unwrap()
                    ))
                } else if entry.oidc_subject.is_some() && earlier.oidc_subject == entry.oidc_subject
                {
                    Some(format!(
                        "oidc_subject {:?}",
                        entry.oidc_subject.as_deref().unwrap()
                    ))
                } else if entry.email.is_some()
                    && earlier.email.as_deref().map(str::to_lowercase)
                        == entry.email.as_deref().map(str::to_lowercase)
                {
                    Some(format!("email {:?}", entry.email.as_deref().unwrap()))
                } else {
                    None
                };
                if let Some(what) = clash {
                    return Err((i, format!("{what} is already used by {}", earlier.name)));
                }
            }
        }
        Ok(ApproverDirectory { entries })
    }

    pub fn entries(&self) -> &[DirectoryEntry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The approver a Slack user id belongs to.
    pub fn by_slack_user(&self, user: &str) -> Option<&DirectoryEntry> {
        self.entries
            .iter()
            .find(|e| e.slack_user.as_deref() == Some(user))
    }

    /// The approver an OIDC identity belongs to: the subject first, then a
    /// verified email.
    pub fn by_oidc(&self, subject: &str, verified_email: Option<&str>) -> Option<&DirectoryEntry> {
        self.entries
            .iter()
            .find(|e| e.oidc_subject.as_deref() == Some(subject))
            .or_else(|| {
                let email = verified_email?.to_lowercase();
                self.entries
                    .iter()
                    .find(|e| e.email.as_deref().map(str::to_lowercase) == Some(email.clone()))
            })
    }

    pub fn get(&self, name: &Identity) -> Option<&DirectoryEntry> {
        self.entries.iter().find(|e| e.name.same_person(name))
    }

    /// Whether `name` has an identity a provider or a key vouches for, and
    /// so must not be answered for by a bot.
    pub fn vouched(&self, name: &Identity) -> bool {
        self.get(name).is_some_and(|e| {
            !e.keys.is_empty()
                || e.oidc_subject.is_some()
                || e.email.is_some()
                || e.slack_user.is_some()
        })
    }

    /// The keys as `allowed_signers` lines.
    pub fn allowed_signers(&self) -> String {
        let mut out = String::new();
        for entry in &self.entries {
            for key in &entry.keys {
                out.push_str(&format!("\"{}\" {key}\n", entry.name.as_str()));
            }
        }
        out
    }

    /// Group name -> member names, from the entries' `groups`.
    pub fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for entry in &self.entries {
            for group in &entry.groups {
                groups
                    .entry(group.clone())
                    .or_default()
                    .push(entry.name.as_str().to_string());
            }
        }
        groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> DirectoryEntry {
        DirectoryEntry {
            name: Identity::parse(name).unwrap(),
            keys: vec![],
            oidc_subject: None,
            email: None,
            slack_user: None,
            groups: vec![],
        }
    }

    #[test]
    fn identities_map_to_one_approver_or_none() {
        let bob = DirectoryEntry {
            slack_user: Some("U0BOB".into()),
            oidc_subject: Some("sub-bob".into()),
            email: Some("Bob@Example.com".into()),
            groups: vec!["sre".into()],
            ..entry("bob")
        };
        let dir = ApproverDirectory::new(vec![bob, entry("carol")]).unwrap();
        assert_eq!(dir.by_slack_user("U0BOB").unwrap().name.as_str(), "bob");
        assert!(dir.by_slack_user("U0EVE").is_none());
        assert_eq!(dir.by_oidc("sub-bob", None).unwrap().name.as_str(), "bob");
        assert_eq!(
            dir.by_oidc("other", Some("bob@example.com"))
                .unwrap()
                .name
                .as_str(),
            "bob"
        );
        assert!(dir.by_oidc("other", None).is_none());
        assert!(dir.vouched(&Identity::parse("bob").unwrap()));
        assert!(!dir.vouched(&Identity::parse("carol").unwrap()));
        assert_eq!(dir.groups()["sre"], vec!["bob".to_string()]);
    }

    #[test]
    fn a_shared_identity_or_look_alike_name_is_refused() {
        let a = DirectoryEntry {
            slack_user: Some("U1".into()),
            ..entry("bob")
        };
        let b = DirectoryEntry {
            slack_user: Some("U1".into()),
            ..entry("carol")
        };
        assert!(ApproverDirectory::new(vec![a.clone(), b]).is_err());
        assert!(ApproverDirectory::new(vec![a, entry("Bob")]).is_err());
    }
}
