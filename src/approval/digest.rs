//! The digest that binds an approval to one exact call.
//!
//! SHA-256 over the canonical JSON of everything that makes two calls "the
//! same call" for an approver: server, tool, arguments, `_meta` (without the
//! progress token) and any extra params, the tool's
//! definition (fingerprint), the policy revision that held it, and the
//! principal. Change any of them (a different argument, a redefined tool, a
//! new policy, another user) and an existing approval no longer matches.

use serde_json::{Value, json};

use crate::audit::{canonical_json, sha256_tagged};

/// What a held call is bound to.
pub struct CallIdentity<'a> {
    pub server: &'a str,
    pub tool: &'a str,
    pub arguments: &'a Value,
    /// `_meta` without the progress token.
    pub meta: &'a Value,
    /// Params the method does not define.
    pub extra_params: &'a Value,
    pub fingerprint: Option<&'a str>,
    pub policy_revision: &'a str,
    pub principal: &'a str,
}

/// `sha256:<hex>` of the canonical call identity.
pub fn call_digest(call: &CallIdentity<'_>) -> String {
    let doc = json!({
        "server": call.server,
        "tool": call.tool,
        "arguments": call.arguments,
        "meta": call.meta,
        "extra_params": call.extra_params,
        "tool_fingerprint": call.fingerprint,
        "policy_revision": call.policy_revision,
        "principal": call.principal,
    });
    sha256_tagged(canonical_json(&doc).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(args: Value, principal: &str, revision: &str) -> String {
        call_digest(&CallIdentity {
            server: "fs",
            tool: "write_file",
            arguments: &args,
            meta: &json!({}),
            extra_params: &json!({}),
            fingerprint: Some("sha256:t"),
            policy_revision: revision,
            principal,
        })
    }

    #[test]
    fn same_call_same_digest_whatever_the_key_order() {
        let a = digest(json!({"path": "/srv/a", "content": "x"}), "alice", "r1");
        let b = digest(json!({"content": "x", "path": "/srv/a"}), "alice", "r1");
        assert_eq!(a, b);
    }

    #[test]
    fn any_difference_changes_the_digest() {
        let base = digest(json!({"path": "/srv/a"}), "alice", "r1");
        assert_ne!(base, digest(json!({"path": "/srv/b"}), "alice", "r1"));
        assert_ne!(base, digest(json!({"path": "/srv/a"}), "bob", "r1"));
        assert_ne!(base, digest(json!({"path": "/srv/a"}), "alice", "r2"));
    }
}
