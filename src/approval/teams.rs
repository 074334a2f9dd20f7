//! Microsoft Teams: an Adaptive Card per held call, posted to a Teams
//! Workflows webhook ("Post to a channel when a webhook request is
//! received"). A notification only: approvers answer in the console, which
//! the card links to, so every answer is tied to an identity provider login.

use serde_json::{Value, json};

use super::slack::arguments_summary;
use crate::visible::laid_out;

pub struct Teams {
    url: String,
    client: reqwest::Client,
}

impl Teams {
    pub fn new(url: &str) -> Teams {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("reqwest client with static settings");
        Teams {
            url: url.to_string(),
            client,
        }
    }

    pub async fn post(&self, message: &Value) -> Result<(), String> {
        let response = self
            .client
            .post(&self.url)
            .json(message)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", response.status()))
        }
    }
}

/// The Workflows webhook body: a message with one Adaptive Card (1.4).
pub fn card(document: &Value, console_link: Option<&str>) -> Value {
    let a = &document["approval"];
    let text = |v: &Value| laid_out(v.as_str().unwrap_or("?")).into_owned();
    let reasons: Vec<Value> = a["reasons"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| json!({"type": "TextBlock", "text": format!("- {}", text(r)), "wrap": true}))
        .collect();
    let mut body = vec![
        json!({"type": "TextBlock", "size": "Large", "weight": "Bolder", "wrap": true,
               "text": format!("Approval needed: {} / {}", text(&a["server"]), text(&a["tool"]))}),
        json!({"type": "FactSet", "facts": [
            {"title": "Asked by", "value": text(&a["principal"]["id"])},
            {"title": "Client", "value": laid_out(a["client"]["name"].as_str().unwrap_or("unknown client"))},
            {"title": "Expires", "value": text(&a["expires_at"])},
            {"title": "Approval", "value": text(&a["id"])},
        ]}),
    ];
    if let Some(d) = a["tool_description"].as_str() {
        body.push(
            json!({"type": "TextBlock", "text": laid_out(d), "wrap": true, "isSubtle": true}),
        );
    }
    body.push(json!({"type": "TextBlock", "text": "Arguments", "weight": "Bolder"}));
    body.push(
        json!({"type": "TextBlock", "text": laid_out(&arguments_summary(&a["arguments"])),
                     "fontType": "Monospace", "wrap": true}),
    );
    body.push(json!({"type": "TextBlock", "text": "Why it is held", "weight": "Bolder"}));
    body.extend(reasons);
    let actions: Vec<Value> = console_link
        .map(|url| json!({"type": "Action.OpenUrl", "title": "Review in the console", "url": url}))
        .into_iter()
        .collect();
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
                "actions": actions,
            }
        }]
    })
}
