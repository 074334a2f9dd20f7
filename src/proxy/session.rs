//! Who is on the other end of this connection: principal, client software,
//! and the bounded history of recent decisions that policy can read.

use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock};

use serde::Serialize;
use serde_json::{Value, json};

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
    /// Each entry as JSON (for the input document and the audit log) and
    /// as the policy engine's value (converted once, when recorded).
    history: Mutex<VecDeque<(Value, regorus::Value)>>,
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
            history: Mutex::new(VecDeque::with_capacity(HISTORY_LEN)),
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

    /// The history as JSON and, from the same moment, as the policy
    /// engine's value (its entries shared, not converted again).
    pub fn history_snapshot(&self) -> (Vec<Value>, regorus::Value) {
        let history = self.history.lock().expect("history lock");
        let json = history.iter().map(|(json, _)| json.clone()).collect();
        let rego = history
            .iter()
            .map(|(_, rego)| rego.clone())
            .collect::<Vec<_>>();
        (json, regorus::Value::from(rego))
    }

    /// Remember a decision. An entry the engine cannot represent (it is
    /// built by the firewall from strings, so never in practice) is kept
    /// as `null` for policy.
    pub fn record(&self, entry: Value) {
        let rego = crate::policy::to_rego(&entry).unwrap_or(regorus::Value::Null);
        let mut history = self.history.lock().expect("history lock");
        if history.len() == HISTORY_LEN {
            history.pop_front();
        }
        history.push_back((entry, rego));
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
