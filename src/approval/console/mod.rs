//! The approval console: server-rendered pages on the approval listener
//! where approvers, signed in through the configured OpenID Connect
//! provider, see held calls and answer them.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | pending approvals, newest first, live (polls `/console/state`) |
//! | `GET /approvals/{id}` | one approval: request, answers, Approve/Deny, audit trail |
//! | `POST /console/approvals/{id}/answer` | an answer (CSRF token, reason required to deny) |
//! | `GET /decided` | decided approvals; Revoke for grants not yet used |
//! | `POST /console/grants/{id}/revoke` | revoke an unused grant |
//! | `GET /login`, `GET /oidc/callback`, `POST /console/logout` | sign-in and out |
//!
//! # Invariants
//!
//! - Every page but sign-in needs a session; a session exists only after an
//!   ID token verified ([`oidc`]) and its subject or verified email mapped
//!   to an approver in the directory.
//! - The session cookie is `HttpOnly`, `SameSite=Strict`, and `Secure`
//!   unless the console is served on loopback; its value is a random token
//!   kept only in this process's memory.
//! - Every state-changing request carries the session's CSRF token (a
//!   form field, compared in constant time); a request without it changes
//!   nothing.
//! - Answers go through [`Approvals::answer`] like every other channel
//!   (self-approval, listed approvers, quorum, expiry are the store's and
//!   the release check's rules); their proof is a tag by this process's
//!   console key over the answer and the OIDC identity, so the audit record
//!   says "verified by OIDC issuer X, subject Y" and nothing written to the
//!   store can imitate it.

pub mod oidc;
pub mod pages;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, FromRef, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use self::oidc::{Oidc, SignedIn, random_token};
use self::pages::Viewer;
use super::proof::{Proof, console_message};
use super::{ApprovalRecord, Approvals, NewAnswer, Status, StoreError, Verdict};

/// How long a console session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Sessions kept at once; beyond, the oldest is dropped.
const MAX_SESSIONS: usize = 4096;
const SESSION_COOKIE: &str = "mcpfw_session";
const LOGIN_COOKIE: &str = "mcpfw_login";
/// The reason recorded for an approval given without one.
pub const DEFAULT_APPROVE_REASON: &str = "approved in the console";
/// Decided approvals listed.
const DECIDED_SHOWN: usize = 200;

const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// One signed-in approver.
#[derive(Clone)]
struct ConsoleSession {
    approver: String,
    who: SignedIn,
    csrf: String,
    started: Instant,
}

impl ConsoleSession {
    fn viewer(&self) -> Viewer {
        Viewer {
            approver: self.approver.clone(),
            verified_by: format!(
                "OIDC issuer {}, subject {}",
                self.who.issuer, self.who.subject
            ),
            csrf: self.csrf.clone(),
        }
    }
}

/// The console's state: the provider and the sessions.
pub struct Console {
    pub oidc: Oidc,
    sessions: Mutex<HashMap<String, ConsoleSession>>,
    secure_cookies: bool,
}

impl Console {
    pub fn new(oidc: Oidc, secure_cookies: bool) -> Console {
        Console {
            oidc,
            sessions: Mutex::new(HashMap::new()),
            secure_cookies,
        }
    }

    fn session(&self, headers: &HeaderMap) -> Option<ConsoleSession> {
        let token = cookie(headers, SESSION_COOKIE)?;
        let mut sessions = self.sessions.lock().expect("sessions");
        let session = sessions.get(&token)?.clone();
        if session.started.elapsed() >= SESSION_TTL {
            sessions.remove(&token);
            return None;
        }
        Some(session)
    }

    fn open_session(&self, approver: String, who: SignedIn) -> String {
        let token = random_token();
        let mut sessions = self.sessions.lock().expect("sessions");
        sessions.retain(|_, s| s.started.elapsed() < SESSION_TTL);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.started)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            token.clone(),
            ConsoleSession {
                approver,
                who,
                csrf: random_token(),
                started: Instant::now(),
            },
        );
        token
    }

    fn cookie(&self, name: &str, value: &str, same_site: &str, max_age: u64) -> HeaderValue {
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{name}={value}; Path=/; HttpOnly; SameSite={same_site}; Max-Age={max_age}{secure}"
        ))
        .expect("cookie of URL-safe characters")
    }
}

/// What the approval listener's handlers share.
#[derive(Clone)]
pub struct Listener {
    pub approvals: Arc<Approvals>,
    pub console: Option<Arc<Console>>,
}

impl FromRef<Listener> for Arc<Approvals> {
    fn from_ref(listener: &Listener) -> Arc<Approvals> {
        listener.approvals.clone()
    }
}

/// The console's routes (the listener adds `POST /approvals/{id}` and
/// `POST /slack/interactions`).
pub fn routes() -> axum::Router<Listener> {
    axum::Router::new()
        .route("/", get(queue))
        .route("/decided", get(decided))
        .route("/console.js", get(script))
        .route("/console/state", get(state))
        .route("/console/approvals/{id}/answer", post(answer))
        .route("/console/grants/{id}/revoke", post(revoke))
        .route("/console/logout", post(logout))
        .route("/login", get(login))
        .route("/oidc/callback", get(callback))
}

/// `GET /approvals/{id}`, routed beside the bots' `POST` by the listener.
pub async fn approval_page(
    State(l): State<Listener>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (_, session) = match signed_in(&l, &headers) {
        Ok(pair) => pair,
        Err(refused) => return refused.into_response(),
    };
    render_approval(&l.approvals, &id, &session, None, StatusCode::OK)
}

fn render_approval(
    approvals: &Approvals,
    id: &str,
    session: &ConsoleSession,
    flash: Option<Result<&str, &str>>,
    status: StatusCode,
) -> Response {
    let record = match approvals.store.get(id) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return html(
                StatusCode::NOT_FOUND,
                pages::message(
                    "Not found",
                    &format!("No approval {id}."),
                    Some(("/", "Back to the queue")),
                ),
            );
        }
        Err(e) => {
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::message("Error", &e.to_string(), None),
            );
        }
    };
    // The whole log is read and verified: off the async worker.
    let read = || trail(approvals, id);
    let (trail, verifies) = crate::scope::off_worker(read);
    let viewer = session.viewer();
    html(
        status,
        pages::approval(&record, &viewer, &trail, &verifies, flash),
    )
}

/// The audit records of one approval and of the calls it decided, and
/// whether the whole log verifies.
fn trail(approvals: &Approvals, id: &str) -> (Vec<Value>, Result<String, String>) {
    let path = approvals.audit().path();
    let verifies = crate::audit::verify_file(path)
        .map(|s| format!("{} records, head {}", s.records, s.head))
        .map_err(|e| e.to_string());
    let Ok(text) = std::fs::read_to_string(path) else {
        return (Vec::new(), verifies);
    };
    let records: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let decisions: Vec<Value> = records
        .iter()
        .filter(|r| r["approval_id"] == id)
        .filter_map(|r| r.get("decision_id").cloned())
        .collect();
    let trail = records
        .into_iter()
        .filter(|r| {
            r["approval_id"] == id || r.get("decision_id").is_some_and(|d| decisions.contains(d))
        })
        .collect();
    (trail, verifies)
}

/// Why a console page is not shown.
enum NotSignedIn {
    /// `[approval.oidc]` is not configured.
    NoConsole,
    /// No (live) session: off to sign in.
    SignIn,
    /// A form without this session's CSRF token.
    BadCsrf,
}

impl IntoResponse for NotSignedIn {
    fn into_response(self) -> Response {
        match self {
            NotSignedIn::NoConsole => html(
                StatusCode::NOT_FOUND,
                pages::message(
                    "The console is not configured",
                    "Approvers sign in to the console through OpenID Connect: configure [approval.oidc] issuer, client_id and client_secret_env.",
                    None,
                ),
            ),
            NotSignedIn::SignIn => Redirect::to("/login").into_response(),
            NotSignedIn::BadCsrf => forbidden_csrf(),
        }
    }
}

/// The console and the signed-in approver.
fn signed_in(
    l: &Listener,
    headers: &HeaderMap,
) -> Result<(Arc<Console>, ConsoleSession), NotSignedIn> {
    let console = l.console.clone().ok_or(NotSignedIn::NoConsole)?;
    let session = console.session(headers).ok_or(NotSignedIn::SignIn)?;
    Ok((console, session))
}

/// [`signed_in`] for a state-changing form: its CSRF token must be the
/// session's; a refusal about approval `id` is audited.
fn signed_in_form(
    l: &Listener,
    headers: &HeaderMap,
    csrf: &str,
    id: Option<&str>,
) -> Result<(Arc<Console>, ConsoleSession), NotSignedIn> {
    let (console, session) = signed_in(l, headers)?;
    if !csrf_ok(&session, csrf) {
        if let Some(id) = id {
            l.approvals
                .audit_rejection(id, "console", "missing or wrong CSRF token");
        }
        return Err(NotSignedIn::BadCsrf);
    }
    Ok((console, session))
}

fn csrf_ok(session: &ConsoleSession, given: &str) -> bool {
    !given.is_empty() && bool::from(session.csrf.as_bytes().ct_eq(given.as_bytes()))
}

fn forbidden_csrf() -> Response {
    html(
        StatusCode::FORBIDDEN,
        pages::message(
            "Refused",
            "This form was not sent from a console page of your session (missing or wrong CSRF token). Nothing was changed.",
            Some(("/", "Back to the queue")),
        ),
    )
}

async fn queue(State(l): State<Listener>, headers: HeaderMap) -> Response {
    let (_, session) = match signed_in(&l, &headers) {
        Ok(pair) => pair,
        Err(refused) => return refused.into_response(),
    };
    let now = chrono::Utc::now();
    let pending = match l.approvals.store.list(Some(Status::Pending)) {
        Ok(p) => p
            .into_iter()
            .filter(|r| r.expires_at > now)
            .collect::<Vec<_>>(),
        Err(e) => {
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::message("Error", &e.to_string(), None),
            );
        }
    };
    let viewer = session.viewer();
    html(StatusCode::OK, pages::queue(&pending, &viewer))
}

async fn decided(State(l): State<Listener>, headers: HeaderMap) -> Response {
    let (_, session) = match signed_in(&l, &headers) {
        Ok(pair) => pair,
        Err(refused) => return refused.into_response(),
    };
    let records = match decided_records(&l.approvals) {
        Ok(records) => records,
        Err(e) => {
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::message("Error", &e.to_string(), None),
            );
        }
    };
    let viewer = session.viewer();
    html(StatusCode::OK, pages::decided(&records, &viewer, None))
}

/// The newest decided approvals.
fn decided_records(approvals: &Approvals) -> Result<Vec<ApprovalRecord>, StoreError> {
    Ok(approvals
        .store
        .list(None)?
        .into_iter()
        .filter(|r| r.status != Status::Pending)
        .take(DECIDED_SHOWN)
        .collect())
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        pages::SCRIPT,
    )
        .into_response()
}

/// The pending ids, for the queue page's live update.
async fn state(State(l): State<Listener>, headers: HeaderMap) -> Response {
    if let Err(refused) = signed_in(&l, &headers) {
        return refused.into_response();
    }
    let now = chrono::Utc::now();
    let ids: Vec<String> = l
        .approvals
        .store
        .list(Some(Status::Pending))
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.expires_at > now)
        .map(|r| r.id)
        .collect();
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({"pending": ids})),
    )
        .into_response()
}

#[derive(Deserialize)]
struct AnswerForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    reason: String,
    /// 0 or absent: this call, once.
    #[serde(default)]
    scope_minutes: u64,
}

async fn answer(
    State(l): State<Listener>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<AnswerForm>,
) -> Response {
    let (_, session) = match signed_in_form(&l, &headers, &form.csrf, Some(&id)) {
        Ok(pair) => pair,
        Err(refused) => return refused.into_response(),
    };
    let decision = match form.decision.as_str() {
        "approve" => Verdict::Approve,
        "deny" => Verdict::Deny,
        _ => {
            return render_approval(
                &l.approvals,
                &id,
                &session,
                Some(Err("Choose Approve or Deny.")),
                StatusCode::BAD_REQUEST,
            );
        }
    };
    let typed = form.reason.trim();
    if decision == Verdict::Deny && typed.is_empty() {
        l.approvals
            .audit_rejection(&id, "console", "a deny needs a reason");
        return render_approval(
            &l.approvals,
            &id,
            &session,
            Some(Err(
                "A deny needs a reason: say why, then press Deny again.",
            )),
            StatusCode::BAD_REQUEST,
        );
    }
    let reason = if typed.is_empty() {
        DEFAULT_APPROVE_REASON.to_string()
    } else {
        typed.to_string()
    };
    let record = match l.approvals.store.get(&id) {
        Ok(Some(r)) => r,
        _ => return render_approval(&l.approvals, &id, &session, None, StatusCode::NOT_FOUND),
    };
    let scope_seconds = form.scope_minutes.saturating_mul(60);
    if scope_seconds > 0
        && (decision == Verdict::Deny || scope_seconds > pages::max_scope_seconds(&record))
    {
        return render_approval(
            &l.approvals,
            &id,
            &session,
            Some(Err(
                "The policy does not allow approving identical calls for that long.",
            )),
            StatusCode::BAD_REQUEST,
        );
    }
    let digest = record.digest;
    let timestamp = chrono::Utc::now().timestamp();
    let who = &session.who;
    let message = console_message(
        &id,
        &digest,
        &session.approver,
        decision.as_str(),
        &reason,
        &who.issuer,
        &who.subject,
        who.email.as_deref(),
        timestamp,
        scope_seconds,
    );
    let answer = NewAnswer {
        approver: session.approver.clone(),
        decision,
        reason,
        channel: "console".into(),
        proof: Some(Proof::Console {
            issuer: who.issuer.clone(),
            subject: who.subject.clone(),
            email: who.email.clone(),
            timestamp,
            scope_seconds,
            tag: l.approvals.verifier.console_key.tag(&message),
        }),
    };
    match l.approvals.answer(&id, &answer) {
        Ok(outcome) => {
            let text = match outcome.status {
                Status::Approved => "Approved. The call runs when the client repeats it (or at once, if it is still waiting).".to_string(),
                Status::Denied => "Denied. The client is told your reason.".to_string(),
                _ => format!("Your approval is recorded: {} of {} approvals.", outcome.approvals, outcome.quorum),
            };
            render_approval(&l.approvals, &id, &session, Some(Ok(&text)), StatusCode::OK)
        }
        Err(e) => {
            let status = match &e {
                StoreError::AnswerRejected(
                    super::AnswerRejection::SelfApproval | super::AnswerRejection::NotAnApprover,
                ) => StatusCode::FORBIDDEN,
                StoreError::AnswerRejected(_) => StatusCode::CONFLICT,
                StoreError::NotFound(_) => StatusCode::NOT_FOUND,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let text = format!("Your answer was not recorded: {e}");
            render_approval(&l.approvals, &id, &session, Some(Err(&text)), status)
        }
    }
}

#[derive(Deserialize)]
struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

async fn revoke(
    State(l): State<Listener>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<RevokeForm>,
) -> Response {
    let (_, session) = match signed_in_form(&l, &headers, &form.csrf, Some(&id)) {
        Ok(pair) => pair,
        Err(refused) => return refused.into_response(),
    };
    let reason = if form.reason.trim().is_empty() {
        "revoked in the console"
    } else {
        form.reason.trim()
    };
    let flash = match l.approvals.revoke(&id, &session.approver, reason) {
        Ok(true) => format!("The grant of {id} is revoked: the call it approved will not run."),
        Ok(false) => format!("{id} has no unused grant to revoke."),
        Err(e) => format!("Could not revoke {id}: {e}"),
    };
    let records = decided_records(&l.approvals).unwrap_or_default();
    let viewer = session.viewer();
    html(
        StatusCode::OK,
        pages::decided(&records, &viewer, Some(&flash)),
    )
}

#[derive(Deserialize)]
struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(l): State<Listener>,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    let (console, _) = match signed_in_form(&l, &headers, &form.csrf, None) {
        Ok(pair) => pair,
        Err(refused) => return refused.into_response(),
    };
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        console.sessions.lock().expect("sessions").remove(&token);
    }
    let mut response = html(
        StatusCode::OK,
        pages::message(
            "Signed out",
            "You are signed out of the approval console.",
            Some(("/login", "Sign in again")),
        ),
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        console.cookie(SESSION_COOKIE, "", "Strict", 0),
    );
    response
}

async fn login(State(l): State<Listener>) -> Response {
    let Some(console) = l.console.clone() else {
        return NotSignedIn::NoConsole.into_response();
    };
    match console.oidc.start().await {
        Ok((url, state)) => {
            let mut response = Redirect::to(&url).into_response();
            // Lax: the provider's redirect back is a cross-site navigation.
            response.headers_mut().append(
                header::SET_COOKIE,
                console.cookie(LOGIN_COOKIE, &state, "Lax", oidc::LOGIN_TTL.as_secs()),
            );
            response
        }
        Err(e) => html(
            StatusCode::BAD_GATEWAY,
            pages::message(
                "Sign-in is unavailable",
                &e.to_string(),
                Some(("/login", "Try again")),
            ),
        ),
    }
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn callback(
    State(l): State<Listener>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let Some(console) = l.console.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let refuse = |status: StatusCode, why: String| {
        tracing::warn!("console sign-in refused: {why}");
        html(
            status,
            pages::message("Sign-in refused", &why, Some(("/login", "Sign in again"))),
        )
    };
    if let Some(error) = q.error {
        return refuse(
            StatusCode::UNAUTHORIZED,
            format!(
                "the identity provider said {error}: {}",
                q.error_description.unwrap_or_default()
            ),
        );
    }
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the provider sent no code or state".into(),
        );
    };
    let bound = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if bound.is_empty() || !bool::from(bound.as_bytes().ct_eq(state.as_bytes())) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "this sign-in was started in another browser (state does not match)".into(),
        );
    }
    let who = match console.oidc.finish(&state, &code).await {
        Ok(who) => who,
        Err(e) => return refuse(StatusCode::UNAUTHORIZED, e.to_string()),
    };
    let directory = &l.approvals.verifier.directory;
    let Some(entry) = directory.by_oidc(&who.subject, who.email.as_deref()) else {
        let record = json!({"channel": "console", "issuer": who.issuer, "subject": who.subject, "email": who.email,
                            "error": "signed in, but not an approver in the directory"});
        if let Err(e) = l.approvals.audit().append("console.login_refused", record) {
            tracing::error!("audit write failed: {e}");
        }
        return refuse(
            StatusCode::FORBIDDEN,
            format!(
                "You signed in as subject {} ({}) at {}, but no [[approver]] in mcp-firewall's directory has that oidc_subject or email.",
                who.subject,
                who.email.as_deref().unwrap_or("no verified email"),
                who.issuer
            ),
        );
    };
    let approver = entry.name.as_str().to_string();
    let record = json!({"channel": "console", "approver": approver, "issuer": who.issuer, "subject": who.subject});
    if let Err(e) = l.approvals.audit().append("console.login", record) {
        tracing::error!("audit write failed: {e}");
    }
    let token = console.open_session(approver, who);
    // A page, not a redirect: a SameSite=Strict cookie set at the end of a
    // cross-site redirect chain is not sent until the next same-site
    // navigation, which this page makes.
    let mut response = html(
        StatusCode::OK,
        pages::layout(
            "Signed in",
            None,
            r#"<meta http-equiv="refresh" content="0; url=/"><p>Signed in. <a href="/">Continue to the approval queue</a>.</p>"#,
            false,
        ),
    );
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        console.cookie(SESSION_COOKIE, &token, "Strict", SESSION_TTL.as_secs()),
    );
    headers.append(
        header::SET_COOKIE,
        console.cookie(LOGIN_COOKIE, "", "Lax", 0),
    );
    response
}

/// A cookie's value from the `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}
