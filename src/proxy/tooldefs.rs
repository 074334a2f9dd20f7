//! Scanning tool definitions when a listing arrives: `input.tool.findings`
//! and `tool.flagged` audit records ([`crate::inspect::tooldefs`]).
//!
//! Findings are computed once per listing (shadowing needs every server's
//! tool names) and kept by exposed name and fingerprint; a definition seen
//! without a listing (should not happen) is scanned on the spot, without
//! the shadowing check.

use serde_json::{Value, json};

use super::Proxy;
use crate::inspect::tooldefs::{ToolNames, scan_tool};
use crate::upstream::{Entry, Named};

impl Proxy {
    /// Scan every tool of a fresh listing; audit the flagged ones (once per
    /// definition and session).
    pub(super) fn scan_tools(&self, named: &Named) {
        let names = ToolNames::new(named.iter().flat_map(|e| {
            [
                (e.server.as_str(), e.name.as_str()),
                (e.server.as_str(), e.exposed.as_str()),
            ]
        }));
        let scanned: Vec<_> = named
            .iter()
            .map(|entry| (entry, scan_tool(&entry.def, &names, &entry.server)))
            .collect();
        let mut cache = self.tool_findings.lock().expect("tool findings lock");
        for (entry, findings) in scanned {
            let known = cache
                .get(&entry.exposed)
                .is_some_and(|(fp, _)| *fp == entry.fingerprint);
            if !known && !findings.is_empty() {
                let record = json!({"session_id": self.session.id, "server": entry.server,
                                    "tool": entry.name, "fingerprint": entry.fingerprint,
                                    "findings": findings});
                if let Err(e) = self.shared.audit.append("tool.flagged", record) {
                    tracing::error!("audit write failed: {e}");
                }
            }
            cache.insert(entry.exposed.clone(), (entry.fingerprint.clone(), findings));
        }
    }

    /// `input.tool.findings` for a listed tool.
    pub(super) fn tool_findings_for(&self, entry: &Entry) -> Value {
        let cache = self.tool_findings.lock().expect("tool findings lock");
        match cache.get(&entry.exposed) {
            Some((fp, findings)) if *fp == entry.fingerprint => json!(findings),
            _ => json!(scan_tool(&entry.def, &ToolNames::default(), &entry.server)),
        }
    }
}
