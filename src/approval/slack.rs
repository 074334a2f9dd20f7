//! Slack: a Block Kit message per held call, and answers from its buttons.
//!
//! # Messages
//!
//! [`message`] renders an approval document as Block Kit: who asked, which
//! server and tool, the tool's description, the arguments (folded), the
//! policy's reasons, the expiry, a *Reason* text box, **Approve** / **Deny**
//! buttons and a link to the console page. Each button's `action_id` is
//! `approve` or `deny` and its `value` the approval id; the buttons' block id
//! is `mcpfw:<call digest>`, so a click names the approval *and* the call.
//! It is posted to an incoming webhook, or with `chat.postMessage` and a bot
//! token ([`Slack::post`]).
//!
//! # Answers
//!
//! Clicks arrive at `POST /slack/interactions` as Slack sends them:
//! `application/x-www-form-urlencoded` with a `payload` field. Checks:
//!
//! - the signature: `X-Slack-Signature: v0=<hex HMAC-SHA256>` over
//!   `v0:<X-Slack-Request-Timestamp>:<raw body>` with the app's signing
//!   secret, compared in constant time, the timestamp within ±5 minutes
//!   ([`verify_request`]);
//! - the payload ([`parse_interaction`]): `block_actions`, one action,
//!   approve or deny, the approval id and digest, the Slack user id;
//! - the user id maps to one approver through the directory; everything else
//!   (self-approval, listed approvers, quorum, expiry) is the store's.
//!
//! The signed request itself is the answer's proof ([`Proof::Slack`]): the
//! firewall verifies it again, with the signing secret it holds in memory,
//! before the answer helps release a call.
//!
//! [`Proof::Slack`]: super::proof::Proof::Slack

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::proof::Proof;
use super::signing::TIMESTAMP_TOLERANCE_SECS;
use super::{Approvals, NewAnswer, Status, Verdict};

/// Slack's signature version prefix.
const VERSION: &str = "v0";
/// Prefix of the buttons' block id; the call digest follows.
pub const BLOCK_PREFIX: &str = "mcpfw:";
/// Block and action id of the reason text box.
pub const REASON_ID: &str = "reason";
/// The reason recorded when an approver approves without typing one.
pub const DEFAULT_APPROVE_REASON: &str = "approved in Slack";
/// Longest argument summary shown (Slack's section text limit is 3000).
const MAX_ARGUMENTS_CHARS: usize = 1500;
/// Approval messages remembered for `chat.update` (then forgotten at once:
/// a missed update leaves a stale message, never a wrong answer).
const MAX_REMEMBERED_MESSAGES: usize = 10_000;
/// Strings longer than this are folded in the summary.
const FOLD_AT: usize = 120;

/// The app's signing secret. Its bytes never appear in `Debug` output.
#[derive(Clone)]
pub struct SlackSecret(Vec<u8>);

impl SlackSecret {
    pub fn new(secret: &str) -> Result<SlackSecret, String> {
        let secret = secret.trim();
        if secret.len() < 16 {
            return Err("the Slack signing secret is shorter than 16 characters".into());
        }
        Ok(SlackSecret(secret.as_bytes().to_vec()))
    }

    fn mac(&self, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts any key length");
        mac.update(format!("{VERSION}:{timestamp}:").as_bytes());
        mac.update(body);
        mac
    }

    /// `v0=<hex>` for `body` at `timestamp` (what Slack sends; tests use it).
    pub fn sign(&self, timestamp: i64, body: &[u8]) -> String {
        format!(
            "{VERSION}={}",
            hex::encode(self.mac(timestamp, body).finalize().into_bytes())
        )
    }
}

impl fmt::Debug for SlackSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SlackSecret(…)")
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SlackSignatureError {
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("X-Slack-Request-Timestamp is not a number of seconds")]
    BadTimestamp,
    #[error("X-Slack-Request-Timestamp is more than 5 minutes from our clock")]
    Stale,
    #[error("X-Slack-Signature does not match the signing secret")]
    Mismatch,
}

/// Checks a request's headers against its raw body; the timestamp on success.
pub fn verify_request(
    secret: &SlackSecret,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<i64, SlackSignatureError> {
    let timestamp = timestamp.map(str::trim).filter(|t| !t.is_empty()).ok_or(
        SlackSignatureError::MissingHeader("X-Slack-Request-Timestamp"),
    )?;
    let signature = signature
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(SlackSignatureError::MissingHeader("X-Slack-Signature"))?;
    if !timestamp.bytes().all(|b| b.is_ascii_digit()) || timestamp.len() > 12 {
        return Err(SlackSignatureError::BadTimestamp);
    }
    let ts: i64 = timestamp
        .parse()
        .map_err(|_| SlackSignatureError::BadTimestamp)?;
    if (now - ts).abs() > TIMESTAMP_TOLERANCE_SECS {
        return Err(SlackSignatureError::Stale);
    }
    verify_signature_only(secret, ts, signature, body)?;
    Ok(ts)
}

/// The signature alone (no clock): what the release check re-runs.
pub fn verify_signature_only(
    secret: &SlackSecret,
    timestamp: i64,
    signature: &str,
    body: &[u8],
) -> Result<(), SlackSignatureError> {
    let tag = signature
        .strip_prefix("v0=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(SlackSignatureError::Mismatch)?;
    secret
        .mac(timestamp, body)
        .verify_slice(&tag)
        .map_err(|_| SlackSignatureError::Mismatch)
}

/// One button click, as far as the firewall cares.
#[derive(Debug, Clone, PartialEq)]
pub struct Interaction {
    pub user: String,
    /// `None`: a click on something other than approve/deny (the link).
    pub decision: Option<Verdict>,
    pub approval_id: String,
    pub digest: String,
    /// Trimmed text of the Reason box; empty when none was typed.
    pub typed_reason: String,
    pub response_url: Option<String>,
}

impl Interaction {
    /// The reason the answer records: the typed one, or for an approval
    /// without one, [`DEFAULT_APPROVE_REASON`].
    pub fn reason(&self) -> String {
        match self.decision {
            Some(Verdict::Approve) if self.typed_reason.is_empty() => DEFAULT_APPROVE_REASON.into(),
            _ => self.typed_reason.clone(),
        }
    }
}

/// Reads the `payload` form field of an interaction request.
pub fn parse_interaction(body: &[u8]) -> Result<Interaction, String> {
    let payload = url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned())
        .ok_or("the request has no payload field")?;
    let p: Value =
        serde_json::from_str(&payload).map_err(|e| format!("the payload is not JSON: {e}"))?;
    let kind = p["type"].as_str().unwrap_or_default();
    if kind != "block_actions" {
        return Err(format!("unsupported interaction type {kind:?}"));
    }
    let user = p["user"]["id"]
        .as_str()
        .filter(|u| !u.is_empty())
        .ok_or("the payload names no user")?
        .to_string();
    let actions = p["actions"]
        .as_array()
        .ok_or("the payload has no actions")?;
    let [action] = actions.as_slice() else {
        return Err(format!("expected one action, got {}", actions.len()));
    };
    let decision = match action["action_id"].as_str() {
        Some("approve") => Some(Verdict::Approve),
        Some("deny") => Some(Verdict::Deny),
        _ => None,
    };
    let digest = action["block_id"]
        .as_str()
        .and_then(|b| b.strip_prefix(BLOCK_PREFIX))
        .unwrap_or_default()
        .to_string();
    let typed_reason = p["state"]["values"][REASON_ID][REASON_ID]["value"]
        .as_str()
        .unwrap_or_default()
        .trim()
        .to_string();
    Ok(Interaction {
        user,
        decision,
        approval_id: action["value"].as_str().unwrap_or_default().to_string(),
        digest,
        typed_reason,
        response_url: p["response_url"].as_str().map(str::to_string),
    })
}

/// The Block Kit message for an approval document (`approval.requested`).
pub fn message(document: &Value, console_link: Option<&str>) -> Value {
    let a = &document["approval"];
    let text = |v: &Value| v.as_str().unwrap_or("?").to_string();
    let (server, tool, id) = (text(&a["server"]), text(&a["tool"]), text(&a["id"]));
    let principal = text(&a["principal"]["id"]);
    let client = a["client"]["name"].as_str().unwrap_or("unknown client");
    let reasons = a["reasons"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|x| format!("• {}", x.as_str().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "• no rule allowed this call".into());
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": clip(&crate::visible::text(&format!("Approval needed: {server} / {tool}")), 150)}}),
        json!({"type": "section", "fields": [
            mrkdwn(format!("*Asked by*\n{}", escape(&principal))),
            mrkdwn(format!("*Client*\n{}", escape(client))),
            mrkdwn(format!("*Server / tool*\n`{}` / `{}`", escape(&server), escape(&tool))),
            mrkdwn(format!("*Expires*\n{}", escape(&text(&a["expires_at"])))),
        ]}),
    ];
    if let Some(description) = a["tool_description"].as_str() {
        blocks.push(
            json!({"type": "context", "elements": [mrkdwn(escape(&clip(description, 300)))]}),
        );
    }
    blocks.push(
        json!({"type": "section", "text": mrkdwn(format!("*Arguments*\n```{}```",
        escape(&arguments_summary(&a["arguments"]))))}),
    );
    blocks.push(
        json!({"type": "section", "text": mrkdwn(format!("*Why it is held*\n{}",
        escape(&clip(&reasons, 1000))))}),
    );
    blocks.push(
        json!({"type": "input", "block_id": REASON_ID, "optional": true,
        "label": {"type": "plain_text", "text": "Reason (required to deny)"},
        "element": {"type": "plain_text_input", "action_id": REASON_ID}}),
    );
    let mut buttons = vec![
        json!({"type": "button", "action_id": "approve", "style": "primary", "value": id,
               "text": {"type": "plain_text", "text": "Approve"}}),
        json!({"type": "button", "action_id": "deny", "style": "danger", "value": id,
               "text": {"type": "plain_text", "text": "Deny"}}),
    ];
    if let Some(link) = console_link {
        buttons.push(json!({"type": "button", "action_id": "open", "url": link,
                            "text": {"type": "plain_text", "text": "Open in console"}}));
    }
    blocks.push(
        json!({"type": "actions", "block_id": format!("{BLOCK_PREFIX}{}", text(&a["digest"])),
                       "elements": buttons}),
    );
    blocks.push(json!({"type": "context", "elements": [mrkdwn(format!("`{id}`"))]}));
    json!({
        "text": crate::visible::text(&format!("Approval needed: {principal} wants to call {server}/{tool}")),
        "blocks": blocks,
    })
}

/// The message that replaces the original once an answer is recorded.
pub fn outcome_message(summary: &str) -> Value {
    json!({"replace_original": true, "text": crate::visible::laid_out(summary),
           "blocks": [{"type": "section", "text": mrkdwn(escape(summary))}]})
}

/// A mrkdwn text object that Slack formats but does not rewrite: with
/// `verbatim`, a URL, a channel name or a mention in text the agent or an
/// upstream chose stays text instead of becoming a link (an approver could
/// otherwise be sent to a look-alike console from a tool description).
fn mrkdwn(text: String) -> Value {
    json!({"type": "mrkdwn", "text": text, "verbatim": true})
}

/// A note only the clicking user sees.
pub fn ephemeral(text: &str) -> Value {
    json!({"response_type": "ephemeral", "replace_original": false, "text": crate::visible::laid_out(text)})
}

/// Arguments as indented JSON with long strings folded, clipped.
pub fn arguments_summary(arguments: &Value) -> String {
    let folded = fold(arguments);
    clip(
        &serde_json::to_string_pretty(&folded).unwrap_or_default(),
        MAX_ARGUMENTS_CHARS,
    )
}

fn fold(v: &Value) -> Value {
    match v {
        Value::String(s) if s.chars().count() > FOLD_AT => {
            let head: String = s.chars().take(FOLD_AT).collect();
            Value::String(format!("{head}… ({} chars)", s.chars().count()))
        }
        Value::Array(items) => Value::Array(items.iter().map(fold).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), fold(v))).collect())
        }
        other => other.clone(),
    }
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Slack's mrkdwn escapes: `&`, `<`, `>` (so a tool argument cannot become
/// a link or a mention), and [`crate::visible`]'s escapes for characters
/// that would change how the rest is displayed.
pub fn escape(s: &str) -> String {
    crate::visible::markup(s, &[('&', "&amp;"), ('<', "&lt;"), ('>', "&gt;")])
}

/// Where messages go.
pub struct Slack {
    target: Target,
    pub secret: SlackSecret,
    client: reqwest::Client,
    /// With a bot token: where each approval's message went (channel, ts),
    /// so an answer given elsewhere can update it. In memory only.
    posted: std::sync::Mutex<std::collections::HashMap<String, (String, String)>>,
}

enum Target {
    Webhook(String),
    Bot {
        api_url: String,
        token: String,
        channel: String,
    },
}

impl Slack {
    pub fn new(
        settings: &super::service::SlackSettings,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Slack, String> {
        let secret = env(&settings.signing_secret_env)
            .ok_or_else(|| format!("{} is not set", settings.signing_secret_env))?;
        let secret = SlackSecret::new(&secret)?;
        let target = match (
            &settings.webhook_url,
            &settings.bot_token_env,
            &settings.channel,
        ) {
            (Some(url), _, _) => Target::Webhook(url.clone()),
            (None, Some(var), Some(channel)) => Target::Bot {
                api_url: settings.api_url.clone(),
                token: env(var).ok_or_else(|| format!("{var} is not set"))?,
                channel: channel.clone(),
            },
            _ => return Err("set webhook_url, or bot_token_env and channel".into()),
        };
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Slack {
            target,
            secret,
            client,
            posted: Default::default(),
        })
    }

    /// Posts the message of approval `id`; an error says why Slack did not
    /// take it.
    pub async fn post(&self, id: &str, message: &Value) -> Result<(), String> {
        let (url, body, token) = match &self.target {
            Target::Webhook(url) => (url.clone(), message.clone(), None),
            Target::Bot {
                api_url,
                token,
                channel,
            } => {
                let mut body = message.clone();
                body["channel"] = json!(channel);
                (format!("{api_url}/chat.postMessage"), body, Some(token))
            }
        };
        let mut request = self.client.post(&url).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!("HTTP {status}: {}", clip(&text, 200)));
        }
        // The Web API answers 200 with {"ok": false, "error": "..."}.
        if token.is_some()
            && let Ok(v) = serde_json::from_str::<Value>(&text)
        {
            if v["ok"] != json!(true) {
                return Err(format!("Slack API error: {}", v["error"]));
            }
            if let (Some(channel), Some(ts)) = (v["channel"].as_str(), v["ts"].as_str()) {
                let mut posted = self.posted.lock().expect("posted lock");
                if posted.len() >= MAX_REMEMBERED_MESSAGES {
                    posted.clear();
                }
                posted.insert(id.to_string(), (channel.to_string(), ts.to_string()));
            }
        }
        Ok(())
    }

    /// With a bot token, a task that replaces approval `id`'s message with
    /// `summary` (`chat.update`): for answers given outside Slack. `None`
    /// with an incoming webhook (its messages cannot be edited) or when the
    /// message is not known.
    pub fn update(
        &self,
        id: &str,
        summary: &str,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let Target::Bot { api_url, token, .. } = &self.target else {
            return None;
        };
        let (channel, ts) = self.posted.lock().expect("posted lock").get(id).cloned()?;
        let mut body = outcome_message(summary);
        body["channel"] = json!(channel);
        body["ts"] = json!(ts);
        let request = self
            .client
            .post(format!("{api_url}/chat.update"))
            .bearer_auth(token)
            .json(&body);
        Some(async move {
            match request.send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => tracing::warn!("Slack chat.update answered HTTP {}", r.status()),
                Err(e) => tracing::warn!("Slack chat.update: {e}"),
            }
        })
    }

    /// Posts to an interaction's `response_url` (https, or loopback http).
    pub async fn respond(&self, response_url: &str, message: &Value) {
        if let Err(e) = crate::config::check_url(response_url) {
            tracing::warn!("not answering Slack at {response_url}: {e}");
            return;
        }
        match self.client.post(response_url).json(message).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::warn!("Slack response_url answered HTTP {}", r.status()),
            Err(e) => tracing::warn!("Slack response_url: {e}"),
        }
    }
}

/// What the interactions endpoint answers, and what it tells the clicking
/// user through the interaction's `response_url`.
#[derive(Debug)]
pub struct SlackReply {
    /// 200 for anything Slack sent (a refusal is explained to the user);
    /// 401 for a request Slack did not sign; 409 for a replay.
    pub status: u16,
    pub error: Option<String>,
    pub follow_up: Option<(String, Value)>,
}

impl Approvals {
    /// Check and record a button click on a Slack approval message.
    pub fn answer_from_slack(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> SlackReply {
        let refused = |status: u16, error: String| SlackReply {
            status,
            error: Some(error),
            follow_up: None,
        };
        let Some(slack) = &self.slack else {
            return refused(404, "Slack is not configured".into());
        };
        let now = chrono::Utc::now();
        let ts = match verify_request(&slack.secret, timestamp, signature, body, now.timestamp()) {
            Ok(ts) => ts,
            Err(e) => {
                self.audit_rejection("", "slack", &format!("signature rejected: {e}"));
                return refused(401, e.to_string());
            }
        };
        let signature = signature.unwrap_or_default().trim();
        match self
            .store
            .remember_webhook_id(&format!("slack:{signature}"), now)
        {
            Ok(true) => {}
            Ok(false) => return refused(409, "replayed Slack request".into()),
            Err(e) => return refused(500, e.to_string()),
        }
        let click = match parse_interaction(body) {
            Ok(click) => click,
            Err(e) => return refused(400, e),
        };
        let tell = |text: String| SlackReply {
            status: 200,
            error: Some(text.clone()),
            follow_up: click
                .response_url
                .clone()
                .map(|url| (url, ephemeral(&text))),
        };
        let Some(decision) = click.decision else {
            // The console link button: nothing to record.
            return SlackReply {
                status: 200,
                error: None,
                follow_up: None,
            };
        };
        let id = click.approval_id.clone();
        let Some(entry) = self.verifier.directory.by_slack_user(&click.user) else {
            let why = format!(
                "Slack user {} is not in mcp-firewall's approver directory; ask an administrator to add `slack_user = \"{}\"` to your [[approver]] entry",
                click.user, click.user
            );
            self.audit_rejection(&id, "slack", &why);
            return tell(why);
        };
        if decision == Verdict::Deny && click.typed_reason.is_empty() {
            let why =
                "A deny needs a reason: type it in the Reason box, then press Deny.".to_string();
            self.audit_rejection(&id, "slack", &why);
            return tell(why);
        }
        let answer = NewAnswer {
            approver: entry.name.as_str().to_string(),
            decision,
            reason: click.reason(),
            channel: "slack".into(),
            proof: Some(Proof::Slack {
                timestamp: ts,
                signature: signature.to_string(),
                body: String::from_utf8_lossy(body).into_owned(),
            }),
        };
        match self.answer(&id, &answer) {
            Ok(outcome) => {
                let summary = match outcome.status {
                    Status::Approved => format!(
                        ":white_check_mark: Approved by {} ({}): {}",
                        entry.name, click.user, answer.reason
                    ),
                    Status::Denied => format!(
                        ":no_entry: Denied by {} ({}): {}",
                        entry.name, click.user, answer.reason
                    ),
                    _ => format!(
                        ":hourglass: {} approved ({} of {} approvals)",
                        entry.name, outcome.approvals, outcome.quorum
                    ),
                };
                let done = matches!(outcome.status, Status::Approved | Status::Denied);
                SlackReply {
                    status: 200,
                    error: None,
                    follow_up: click.response_url.clone().map(|url| {
                        let message = if done {
                            outcome_message(&format!("`{id}` {summary}"))
                        } else {
                            ephemeral(&summary)
                        };
                        (url, message)
                    }),
                }
            }
            Err(e) => tell(format!("Your answer to `{id}` was not recorded: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> SlackSecret {
        SlackSecret::new("8f742231b10e8888abcd99yyyzzz85a5").unwrap()
    }

    /// The worked example of Slack's "Verifying requests from Slack" page.
    #[test]
    fn slacks_documented_example_verifies() {
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let sig = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(secret().sign(1531420618, body), sig);
        assert_eq!(
            verify_request(
                &secret(),
                Some("1531420618"),
                Some(sig),
                body,
                1531420618 + 10
            ),
            Ok(1531420618)
        );
    }

    #[test]
    fn wrong_secret_stale_or_altered_requests_are_refused() {
        let body = b"payload=%7B%7D";
        let sig = secret().sign(1000, body);
        let other = SlackSecret::new("another-secret-of-enough-length").unwrap();
        assert_eq!(
            verify_request(&other, Some("1000"), Some(&sig), body, 1000),
            Err(SlackSignatureError::Mismatch)
        );
        assert_eq!(
            verify_request(&secret(), Some("1000"), Some(&sig), body, 1000 + 301),
            Err(SlackSignatureError::Stale)
        );
        assert_eq!(
            verify_request(
                &secret(),
                Some("1000"),
                Some(&sig),
                b"payload=%7B%7D ",
                1000
            ),
            Err(SlackSignatureError::Mismatch)
        );
        assert_eq!(
            verify_request(&secret(), Some("1000"), Some("v0="), body, 1000),
            Err(SlackSignatureError::Mismatch)
        );
        assert_eq!(
            verify_request(&secret(), Some("+1000"), Some(&sig), body, 1000),
            Err(SlackSignatureError::BadTimestamp)
        );
        assert!(verify_request(&secret(), None, Some(&sig), body, 1000).is_err());
    }

    #[test]
    fn a_click_names_the_approval_the_call_and_the_typed_reason() {
        let payload = json!({"type": "block_actions", "user": {"id": "U0BOB"},
            "actions": [{"action_id": "deny", "block_id": "mcpfw:sha256:ab", "value": "apr_1"}],
            "state": {"values": {"reason": {"reason": {"type": "plain_text_input", "value": " no "}}}},
            "response_url": "https://hooks.slack.com/actions/x"});
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish();
        let i = parse_interaction(body.as_bytes()).unwrap();
        assert_eq!(i.user, "U0BOB");
        assert_eq!(i.decision, Some(Verdict::Deny));
        assert_eq!(
            (i.approval_id.as_str(), i.digest.as_str()),
            ("apr_1", "sha256:ab")
        );
        assert_eq!(i.reason(), "no");
    }

    #[test]
    fn the_message_escapes_arguments_and_folds_long_values() {
        let doc = json!({"approval": {"id": "apr_1", "digest": "sha256:ab", "server": "fs", "tool": "write",
            "principal": {"id": "alice"}, "arguments": {"path": "<!channel>", "body": "x".repeat(500)},
            "reasons": ["writes are held"], "expires_at": "2026-12-03T10:00:00Z"}});
        let m = message(&doc, Some("http://127.0.0.1:1/approvals/apr_1"));
        let text = m.to_string();
        assert!(!text.contains("<!channel>"));
        assert!(text.contains("&lt;!channel&gt;"));
        assert!(text.contains("(500 chars)"));
        assert!(text.contains("mcpfw:sha256:ab"));
    }

    /// A link in a tool description (the upstream's text) or in the
    /// arguments (the agent's) stays text: Slack's mrkdwn objects are all
    /// `verbatim` (no auto-linking), and a Teams card holds such text only in
    /// `TextRun`s, which are never read as Markdown.
    #[test]
    fn no_text_an_agent_or_upstream_chose_becomes_a_link() {
        fn objects<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
            match v {
                Value::Array(a) => a.iter().for_each(|v| objects(v, out)),
                Value::Object(o) => {
                    out.push(v);
                    o.values().for_each(|v| objects(v, out));
                }
                _ => {}
            }
        }
        let phish = "[Approve here](https://evil.example/ok) or https://evil.example/ok";
        let doc = json!({"approval": {"id": "apr_1", "digest": "sha256:ab", "server": "fs",
            "tool": "write", "principal": {"id": "alice"}, "client": {"name": phish},
            "tool_description": phish, "arguments": {"note": phish},
            "reasons": [phish], "expires_at": "2026-12-03T10:00:00Z"}});
        let slack = message(&doc, None);
        let mut all = Vec::new();
        objects(&slack, &mut all);
        let mrkdwn: Vec<_> = all.iter().filter(|o| o["type"] == "mrkdwn").collect();
        assert!(mrkdwn.len() >= 6, "{slack}");
        for o in mrkdwn {
            assert_eq!(o["verbatim"], true, "{o}");
        }
        let card = crate::approval::teams::card(&doc, Some("http://127.0.0.1:1/approvals/apr_1"));
        let mut all = Vec::new();
        objects(&card, &mut all);
        let runs = all
            .iter()
            .filter(|o| {
                o["type"] == "TextRun" && o["text"].as_str().unwrap().contains("evil.example")
            })
            .count();
        assert_eq!(runs, 4, "client, description, arguments, reason: {card}");
        for o in all {
            if o["type"] != "TextRun" {
                let own: Vec<_> = o
                    .as_object()
                    .unwrap()
                    .values()
                    .filter(|v| v.is_string())
                    .collect();
                assert!(
                    !own.iter()
                        .any(|v| v.as_str().unwrap().contains("evil.example")),
                    "{o}"
                );
            }
        }
    }

    /// Every string of a Slack message or Teams card and every console
    /// escape shows bidi overrides and control characters as escapes (see
    /// `crate::visible`); line breaks stay.
    #[test]
    fn approvers_see_hidden_characters_as_escapes_on_every_channel() {
        fn strings(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::String(s) => out.push(s.clone()),
                Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
                Value::Object(o) => o.values().for_each(|v| strings(v, out)),
                _ => {}
            }
        }
        let doc = json!({"approval": {"id": "apr_1", "digest": "sha256:ab", "server": "fs\u{202e}",
            "tool": "drop\u{1b}[2K\rread", "principal": {"id": "alice"}, "client": {"name": "c\u{2066}"},
            "tool_description": "d\u{9b}2J", "arguments": {"path": "/srv/\u{202e}txt.sh"},
            "reasons": ["writes /srv/\u{202e}txt.sh"], "expires_at": "2026-12-03T10:00:00Z"}});
        for rendered in [
            message(&doc, Some("http://127.0.0.1:1/approvals/apr_1")),
            crate::approval::teams::card(&doc, Some("http://127.0.0.1:1/approvals/apr_1")),
        ] {
            let mut all = Vec::new();
            strings(&rendered, &mut all);
            let text = all.join("\n");
            assert!(
                !text.chars().any(crate::visible::is_hidden_in_layout),
                "{text:?}"
            );
            assert!(text.contains(r"\u{202e}txt.sh"), "{text:?}");
            assert!(text.contains(r"drop\u{1b}[2K"), "{text:?}");
        }
        let page = crate::approval::console::pages::esc("a\u{202e}b\u{1b}\nc<");
        assert_eq!(page, "a\\u{202e}b\\u{1b}\nc&lt;");
    }
}
