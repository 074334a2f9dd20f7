//! The console's HTML: server-rendered, escaped at every interpolation,
//! no inline script (the page's one script is `/console.js`, allowed by
//! the Content-Security-Policy as `'self'`).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

use crate::approval::slack::arguments_summary;
use crate::approval::{ApprovalRecord, Status};

/// HTML-escapes text for element content and quoted attributes (and shows
/// characters that would change how the rest reads as escapes, see
/// [`crate::visible`]).
pub fn esc(s: &str) -> String {
    crate::visible::markup(
        s,
        &[
            ('&', "&amp;"),
            ('<', "&lt;"),
            ('>', "&gt;"),
            ('"', "&quot;"),
            ('\'', "&#39;"),
        ],
    )
}

const STYLE: &str = r#"
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f5f6f8;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 24px;display:flex;gap:24px;align-items:center}
header a{color:#cfd6e4;text-decoration:none}header a:hover{color:#fff}
header .who{margin-left:auto;font-size:13px;color:#cfd6e4}
header form{display:inline}header button{background:none;border:1px solid #56607a;color:#cfd6e4;border-radius:4px;cursor:pointer}
main{max-width:980px;margin:0 auto;padding:20px 24px}
h1{font-size:22px;margin:8px 0 16px}h2{font-size:17px;margin:20px 0 8px}
.card{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:16px 18px;margin:0 0 14px}
.card h3{margin:0 0 6px;font-size:16px}.card h3 a{color:#1d4ed8;text-decoration:none}
.meta{color:#5b6478;font-size:13px}.meta b{color:#1d2330;font-weight:600}
.reasons{margin:8px 0;padding-left:18px}.reasons li{color:#8a3b12}
pre{background:#f1f3f7;border-radius:6px;padding:10px;overflow:auto;font-size:13px;max-height:340px;margin:6px 0}
.pill{display:inline-block;border-radius:10px;padding:1px 9px;font-size:12px;font-weight:600;background:#e5e7eb}
.pending{background:#fef3c7;color:#92400e}.approved{background:#dcfce7;color:#166534}.used{background:#dbeafe;color:#1e40af}
.denied,.expired,.withdrawn,.revoked{background:#fee2e2;color:#991b1b}
.pin-ok{color:#166534}.pin-changed{color:#991b1b;font-weight:600}
.left{font-weight:600}
form.answer textarea{width:100%;min-height:70px;font:inherit;border:1px solid #c9ced8;border-radius:6px;padding:8px;box-sizing:border-box}
.buttons{display:flex;gap:10px;margin-top:10px}
button.approve{background:#15803d;color:#fff;border:0;border-radius:6px;padding:8px 18px;font-weight:600;cursor:pointer}
button.deny{background:#b91c1c;color:#fff;border:0;border-radius:6px;padding:8px 18px;font-weight:600;cursor:pointer}
button.revoke{background:#fff;color:#b91c1c;border:1px solid #b91c1c;border-radius:6px;padding:4px 12px;cursor:pointer}
.error{background:#fee2e2;border:1px solid #fca5a5;color:#7f1d1d;border-radius:6px;padding:10px 12px;margin-bottom:14px}
.ok{background:#dcfce7;border:1px solid #86efac;color:#14532d;border-radius:6px;padding:10px 12px;margin-bottom:14px}
table{border-collapse:collapse;width:100%;font-size:13px;table-layout:fixed;overflow-wrap:anywhere}td,th{text-align:left;padding:5px 8px;border-bottom:1px solid #eceef2;vertical-align:top}
.empty{color:#5b6478;font-style:italic}
"#;

/// Who is signed in, for the page header and the forms' CSRF token.
pub struct Viewer {
    pub approver: String,
    pub verified_by: String,
    pub csrf: String,
}

pub fn layout(title: &str, viewer: Option<&Viewer>, body: &str, live: bool) -> String {
    let who = match viewer {
        Some(v) => format!(
            r#"<span class="who">signed in as <b>{}</b> ({})</span>
<form method="post" action="/console/logout"><input type="hidden" name="csrf" value="{}"><button>Sign out</button></form>"#,
            esc(&v.approver),
            esc(&v.verified_by),
            esc(&v.csrf)
        ),
        None => String::new(),
    };
    let script = if live {
        r#"<script src="/console.js" defer></script>"#
    } else {
        ""
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · mcp-firewall approvals</title><style>{STYLE}</style>{script}</head>
<body><header><b>mcp-firewall</b><a href="/">Pending</a><a href="/decided">Decided &amp; grants</a>{who}</header>
<main>{body}</main></body></html>"#,
        title = esc(title)
    )
}

/// The one script: reloads the queue when the set of pending approvals
/// changes (polling `/console/state`), and counts down the time left.
pub const SCRIPT: &str = r#"(function(){
  var known = document.body.getAttribute('data-state');
  function tick(){
    document.querySelectorAll('[data-expires]').forEach(function(el){
      var left = Math.floor((Date.parse(el.getAttribute('data-expires')) - Date.now())/1000);
      el.textContent = left > 0 ? (Math.floor(left/60) + 'm ' + (left%60) + 's left') : 'expired';
    });
  }
  function poll(){
    fetch('/console/state', {credentials: 'same-origin'}).then(function(r){ return r.json(); }).then(function(s){
      var now = JSON.stringify(s.pending);
      if (known === null) { known = now; }
      else if (known !== now && document.body.hasAttribute('data-live')) { location.reload(); }
    }).catch(function(){});
  }
  tick(); setInterval(tick, 1000);
  poll(); setInterval(poll, 2000);
})();"#;

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn pill(status: Status) -> String {
    format!(r#"<span class="pill {0}">{0}</span>"#, status.as_str())
}

fn reasons(record: &ApprovalRecord) -> String {
    if record.reasons.is_empty() {
        return r#"<ul class="reasons"><li>no rule allowed this call</li></ul>"#.into();
    }
    let items: String = record
        .reasons
        .iter()
        .map(|r| format!("<li>{}</li>", esc(r)))
        .collect();
    format!(r#"<ul class="reasons">{items}</ul>"#)
}

fn pin(doc: &Value) -> String {
    let pin = &doc["tool_pin"];
    if pin.is_null() {
        return String::new();
    }
    let status = pin["status"].as_str().unwrap_or("unknown");
    let class = match status {
        "pinned" => "pin-ok",
        "changed" => "pin-changed",
        _ => "",
    };
    format!(r#" · pin: <span class="{class}">{}</span>"#, esc(status))
}

fn summary(record: &ApprovalRecord) -> String {
    let doc = &record.request["approval"];
    let client = doc["client"]["name"].as_str().unwrap_or("unknown client");
    let description = doc["tool_description"]
        .as_str()
        .map(|d| format!(r#"<div class="meta">{}</div>"#, esc(d)))
        .unwrap_or_default();
    format!(
        r#"<div class="meta">asked by <b>{principal}</b> via {client} · server <b>{server}</b> · tool <b>{tool}</b>{pin}</div>{description}
{reasons}<pre>{args}</pre>"#,
        principal = esc(&record.principal),
        client = esc(client),
        server = esc(&record.server),
        tool = esc(&record.tool),
        pin = pin(doc),
        reasons = reasons(record),
        args = esc(&arguments_summary(&doc["arguments"])),
    )
}

fn time_left(record: &ApprovalRecord) -> String {
    format!(
        r#"<span class="left" data-expires="{0}">until {0}</span>"#,
        time(&record.expires_at)
    )
}

pub fn queue(records: &[ApprovalRecord], viewer: &Viewer) -> String {
    let mut body = String::from("<h1>Pending approvals</h1>");
    if records.is_empty() {
        body.push_str(r#"<p class="empty">Nothing is waiting for an approver.</p>"#);
    }
    for r in records {
        body.push_str(&format!(
            r#"<div class="card" data-approval="{id}"><h3><a href="/approvals/{id}">{server} / {tool}</a> {pill}</h3>
{summary}<div class="meta">{left} · {answered} of {quorum} approvals · <code>{id}</code></div>{recent}</div>"#,
            id = esc(&r.id),
            server = esc(&r.server),
            tool = esc(&r.tool),
            pill = pill(r.status),
            summary = summary(r),
            left = time_left(r),
            answered = r.answers.iter().filter(|a| a.decision == crate::approval::Verdict::Approve).count(),
            quorum = r.quorum,
            recent = recent_calls(&r.request["approval"]["recent_calls"]),
        ));
    }
    layout("Pending", Some(viewer), &body, true).replacen("<body>", r#"<body data-live="1">"#, 1)
}

fn recent_calls(calls: &Value) -> String {
    let Some(calls) = calls.as_array().filter(|c| !c.is_empty()) else {
        return String::new();
    };
    let rows: String = calls
        .iter()
        .rev()
        .map(|c| {
            format!(
                "<tr><td>{}</td><td>{} / {}</td><td>{}</td></tr>",
                esc(c["time"].as_str().unwrap_or("")),
                esc(c["server"].as_str().unwrap_or("")),
                esc(c["tool"].as_str().unwrap_or("")),
                esc(c["decision"].as_str().unwrap_or(""))
            )
        })
        .collect();
    format!(
        r#"<details><summary class="meta">recent calls in this session ({})</summary><table><tr><th>time</th><th>call</th><th>decision</th></tr>{rows}</table></details>"#,
        calls.len()
    )
}

fn answers(record: &ApprovalRecord) -> String {
    if record.answers.is_empty() {
        return r#"<p class="empty">No answers yet.</p>"#.into();
    }
    let rows: String = record
        .answers
        .iter()
        .map(|a| {
            format!(
                "<tr><td><b>{}</b></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&a.approver),
                esc(a.decision.as_str()),
                esc(&a.reason),
                esc(&a.channel),
                time(&a.at)
            )
        })
        .collect();
    format!(
        "<table><tr><th>approver</th><th>answer</th><th>reason</th><th>channel</th><th>at</th></tr>{rows}</table>"
    )
}

/// One approval: the request, the answers, the form while pending, and
/// the audit trail.
pub fn approval(
    record: &ApprovalRecord,
    viewer: &Viewer,
    trail: &[Value],
    log_verifies: &Result<String, String>,
    flash: Option<Result<&str, &str>>,
) -> String {
    let mut body = String::new();
    match flash {
        Some(Ok(m)) => body.push_str(&format!(r#"<div class="ok">{}</div>"#, esc(m))),
        Some(Err(m)) => body.push_str(&format!(r#"<div class="error">{}</div>"#, esc(m))),
        None => {}
    }
    let approvers = if record.approvers.is_empty() {
        "anyone but the requester".to_string()
    } else {
        record.approvers.join(", ")
    };
    body.push_str(&format!(
        r#"<h1>{server} / {tool} {pill}</h1><div class="card">{summary}
<div class="meta">approval <code>{id}</code> · digest <code>{digest}</code></div>
<div class="meta">created {created} · {left} · approvers: {approvers} · quorum {answered} of {quorum}</div>
{status_reason}</div>"#,
        server = esc(&record.server),
        tool = esc(&record.tool),
        pill = pill(record.status),
        summary = summary(record),
        id = esc(&record.id),
        digest = esc(&record.digest),
        created = time(&record.created_at),
        left = time_left(record),
        approvers = esc(&approvers),
        answered = record
            .answers
            .iter()
            .filter(|a| a.decision == crate::approval::Verdict::Approve)
            .count(),
        quorum = record.quorum,
        status_reason = record
            .status_reason
            .as_deref()
            .map(|r| format!(r#"<div class="meta">{}</div>"#, esc(r)))
            .unwrap_or_default(),
    ));
    body.push_str("<h2>Answers</h2>");
    body.push_str(&answers(record));
    if record.status == Status::Pending && Utc::now() < record.expires_at {
        body.push_str(&format!(
            r#"<h2>Your answer</h2><form class="answer" method="post" action="/console/approvals/{id}/answer">
<input type="hidden" name="csrf" value="{csrf}">
<label for="reason">Reason (required to deny)</label>
<textarea id="reason" name="reason" placeholder="Why you approve or deny"></textarea>
{scope}
<div class="buttons"><button class="approve" name="decision" value="approve">Approve</button>
<button class="deny" name="decision" value="deny">Deny</button></div></form>"#,
            id = esc(&record.id),
            csrf = esc(&viewer.csrf),
            scope = scope_choice(record),
        ));
    }
    if record.status == Status::Approved {
        body.push_str(&revoke_form(&record.id, &viewer.csrf));
    }
    body.push_str("<h2>Audit trail</h2>");
    body.push_str(&match log_verifies {
        Ok(head) => format!(
            r#"<div class="meta pin-ok">The audit log verifies ({}).</div>"#,
            esc(head)
        ),
        Err(e) => format!(
            r#"<div class="error">The audit log does NOT verify: {}</div>"#,
            esc(e)
        ),
    });
    if trail.is_empty() {
        body.push_str(r#"<p class="empty">No records.</p>"#);
    } else {
        let rows: String = trail
            .iter()
            .map(|r| {
                let detail = trail_detail(r);
                format!(
                    "<tr><td>{}</td><td>{}</td><td><b>{}</b></td><td>{}</td></tr>",
                    esc(&r["seq"].to_string()),
                    esc(r["ts"].as_str().unwrap_or("")),
                    esc(r["event"].as_str().unwrap_or("")),
                    esc(&detail)
                )
            })
            .collect();
        body.push_str(&format!(
            "<table><tr><th>seq</th><th>time</th><th>event</th><th>detail</th></tr>{rows}</table>"
        ));
    }
    layout(&record.id, Some(viewer), &body, true)
}

/// The policy's `max_scope_seconds` for this request (0: once only).
pub fn max_scope_seconds(record: &ApprovalRecord) -> u64 {
    record.request["approval"]["obligations"]["max_scope_seconds"]
        .as_u64()
        .unwrap_or(0)
}

/// "This call, once" and, when the policy permits, "identical calls for N
/// minutes" up to its `max_scope_seconds`.
fn scope_choice(record: &ApprovalRecord) -> String {
    let max_minutes = max_scope_seconds(record) / 60;
    let note = "Approving also pins the tool's current definition.";
    if max_minutes == 0 {
        return format!(r#"<div class="meta">Scope: this call, once. {note}</div>"#);
    }
    let mut minutes: Vec<u64> = [5, 15, 60, 240]
        .into_iter()
        .filter(|m| *m < max_minutes)
        .collect();
    minutes.push(max_minutes);
    let options: String = minutes
        .iter()
        .map(|m| format!(r#"<option value="{m}">identical calls for {m} minutes</option>"#))
        .collect();
    format!(
        r#"<label for="scope">Scope</label> <select id="scope" name="scope_minutes"><option value="0" selected>this call, once</option>{options}</select>
<div class="meta">{note}</div>"#
    )
}

fn trail_detail(r: &Value) -> String {
    let mut parts = Vec::new();
    for key in [
        "result",
        "channel",
        "approver",
        "approvers",
        "decision",
        "reason",
        "verified_by",
        "status",
        "error",
        "revoked_by",
        "outcome",
        "scope",
    ] {
        if let Some(v) = r.get(key).filter(|v| !v.is_null()) {
            // A decision's result and error objects: their headline only.
            let v = v.get("decision").or_else(|| v.get("message")).unwrap_or(v);
            let text = v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            parts.push(format!("{key}: {text}"));
        }
    }
    parts.join(" · ")
}

fn revoke_form(id: &str, csrf: &str) -> String {
    format!(
        r#"<form method="post" action="/console/grants/{id}/revoke"><input type="hidden" name="csrf" value="{csrf}">
<input type="hidden" name="reason" value="revoked in the console"><button class="revoke">Revoke grant</button></form>"#,
        id = esc(id),
        csrf = esc(csrf)
    )
}

pub fn decided(records: &[ApprovalRecord], viewer: &Viewer, flash: Option<&str>) -> String {
    let mut body = String::from("<h1>Decided approvals and grants</h1>");
    if let Some(m) = flash {
        body.push_str(&format!(r#"<div class="ok">{}</div>"#, esc(m)));
    }
    let rows: String = records
        .iter()
        .map(|r| {
            let action = if r.status == Status::Approved {
                revoke_form(&r.id, &viewer.csrf)
            } else {
                String::new()
            };
            format!(
                r#"<tr data-approval="{id}"><td><a href="/approvals/{id}">{id}</a></td><td>{server} / {tool}</td><td>{principal}</td><td>{pill}</td><td>{why}</td><td>{grant}</td><td>{action}</td></tr>"#,
                id = esc(&r.id),
                server = esc(&r.server),
                tool = esc(&r.tool),
                principal = esc(&r.principal),
                pill = pill(r.status),
                why = esc(r.status_reason.as_deref().unwrap_or("")),
                grant = r
                    .grant_expires_at
                    .filter(|_| r.status == Status::Approved)
                    .map(|t| format!("usable until {}", time(&t)))
                    .unwrap_or_default(),
            )
        })
        .collect();
    if records.is_empty() {
        body.push_str(r#"<p class="empty">Nothing decided yet.</p>"#);
    } else {
        body.push_str(&format!(
            "<table><tr><th>approval</th><th>call</th><th>asked by</th><th>status</th><th>why</th><th>grant</th><th></th></tr>{rows}</table>"
        ));
    }
    layout("Decided", Some(viewer), &body, false)
}

pub fn message(title: &str, text: &str, link: Option<(&str, &str)>) -> String {
    let link = link
        .map(|(href, label)| format!(r#"<p><a href="{}">{}</a></p>"#, esc(href), esc(label)))
        .unwrap_or_default();
    layout(
        title,
        None,
        &format!("<h1>{}</h1><p>{}</p>{link}", esc(title), esc(text)),
        false,
    )
}
