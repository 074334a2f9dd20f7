//! Who is on the other end of this connection: principal, client software,
//! and the bounded history of recent decisions that policy can read.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;
use serde_json::{Value, json};

use crate::audit::Canonical;
use crate::audit::mask::{MaskRules, mask_owned};

/// Entries kept in `input.session.history`. Enough for flow rules ("after a
/// call that read secrets ...") while keeping the input small and the
/// evaluation fast.
pub const HISTORY_LEN: usize = 32;

/// The identity a request is attributed to.
#[derive(Debug, Clone, Serialize)]
pub struct Principal {
    pub id: String,
    /// `flag` (--principal), `config` (session.principal) or `os` (the OS user).
    pub source: &'static str,
    pub claims: Value,
}

impl Principal {
    pub fn new(id: impl Into<String>, source: &'static str) -> Principal {
        Principal {
            id: id.into(),
            source,
            claims: json!({}),
        }
    }

    /// The OS user running the firewall: what a stdio session is, absent
    /// anything more specific.
    pub fn os_user() -> Principal {
        let id = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .ok()
            .filter(|u| !u.is_empty())
            .or_else(passwd_name)
            .unwrap_or_else(|| format!("uid:{}", unsafe { libc::getuid() }));
        Principal::new(id, "os")
    }
}

/// One client connection.
pub struct Session {
    pub id: String,
    pub transport: &'static str,
    pub principal: Principal,
    /// `clientInfo` from `initialize`, set once.
    pub client: OnceLock<Value>,
    /// A Claude Code hook's context (`input.hook`: event, raw tool name,
    /// tool use id, working directory, permission mode), set once.
    pub hook: OnceLock<Value>,
    /// The client declared the 2026-07-28 tasks extension
    /// (`capabilities.extensions["io.modelcontextprotocol/tasks"]`) in
    /// `initialize`: tasks are shown to it in that extension's shape.
    pub tasks_extension: OnceLock<bool>,
    /// The remembered decisions, in every form a decision needs them.
    history: Mutex<History>,
}

/// The session's last [`HISTORY_LEN`] decisions. Each form is built when a
/// decision is remembered, never per decision that reads them (issue 11):
/// the policy engine's array shares its entries, and the audit log's text
/// is rendered (masked, canonical) once.
struct History {
    entries: VecDeque<Remembered>,
    /// The whole history as the engine's array.
    rego: regorus::Value,
    /// The whole history, masked, as a canonical JSON array.
    text: Arc<Canonical>,
}

/// One remembered decision.
struct Remembered {
    /// As JSON, for approvers.
    json: Value,
    /// As the policy engine's value.
    rego: regorus::Value,
    /// Masked, in canonical form, for the audit log.
    text: Canonical,
}

/// The session's history as one decision reads it.
pub struct HistorySnapshot {
    /// For the policy engine.
    pub rego: regorus::Value,
    /// For the audit record: masked, canonical.
    pub text: Arc<Canonical>,
}

impl Session {
    pub fn new(transport: &'static str, principal: Principal) -> Session {
        Session {
            id: uuid::Uuid::new_v4().to_string(),
            transport,
            principal,
            client: OnceLock::new(),
            hook: OnceLock::new(),
            tasks_extension: OnceLock::new(),
            history: Mutex::new(History {
                entries: VecDeque::with_capacity(HISTORY_LEN),
                rego: regorus::Value::from(Vec::<regorus::Value>::new()),
                text: Arc::new(Canonical::array([])),
            }),
        }
    }

    /// Whether the client declared the 2026-07-28 tasks extension.
    pub fn speaks_tasks_extension(&self) -> bool {
        self.tasks_extension.get().copied().unwrap_or(false)
    }

    /// `{name, version}` of the client, empty strings before initialize.
    pub fn client_info(&self) -> Value {
        let info = self.client.get().cloned().unwrap_or(Value::Null);
        json!({
            "name": info.get("name").cloned().unwrap_or(json!("")),
            "version": info.get("version").cloned().unwrap_or(json!("")),
        })
    }

    /// The history as the policy engine and the audit log read it, both
    /// from the same moment.
    pub fn history_snapshot(&self) -> HistorySnapshot {
        let history = self.history.lock().expect("history lock");
        HistorySnapshot {
            rego: history.rego.clone(),
            text: history.text.clone(),
        }
    }

    /// The last `n` decisions as JSON, oldest first.
    pub fn recent(&self, n: usize) -> Vec<Value> {
        let history = self.history.lock().expect("history lock");
        let skip = history.entries.len().saturating_sub(n);
        history
            .entries
            .iter()
            .skip(skip)
            .map(|e| e.json.clone())
            .collect()
    }

    /// Remember a decision; `mask` is what the audit log masks. An entry
    /// the engine cannot represent (it is built by the firewall from
    /// strings, so never in practice) is kept as `null` for policy.
    pub fn record(&self, entry: Value, mask: &MaskRules) {
        let rego = crate::policy::to_rego(&entry).unwrap_or(regorus::Value::Null);
        let text = Canonical::of(&mask_owned(entry.clone(), mask));
        let mut history = self.history.lock().expect("history lock");
        if history.entries.len() == HISTORY_LEN {
            history.entries.pop_front();
        }
        history.entries.push_back(Remembered {
            json: entry,
            rego,
            text,
        });
        let rego = history.entries.iter().map(|e| e.rego.clone());
        history.rego = regorus::Value::from(rego.collect::<Vec<_>>());
        history.text = Arc::new(Canonical::array(history.entries.iter().map(|e| &e.text)));
    }
}

/// The login name of the current uid from the password database.
fn passwd_name() -> Option<String> {
    // SAFETY: getpwuid_r writes into the buffers we own; the name pointer is
    // read only while `buf` is alive and is checked for null first.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            libc::getuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut out,
        );
        if rc != 0 || out.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr(pwd.pw_name)
            .to_str()
            .ok()
            .map(str::to_string)
    }
}
