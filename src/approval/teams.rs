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
///
/// Every text the agent or an upstream chose (tool, description, arguments,
/// reasons, client name) is a `TextRun` in a `RichTextBlock`, which Adaptive
/// Cards never read as Markdown: in a `TextBlock` or a fact, `[text](url)`
/// in a tool description would become a link an approver might follow.
pub fn card(document: &Value, console_link: Option<&str>) -> Value {
    let a = &document["approval"];
    let text = |v: &Value| laid_out(v.as_str().unwrap_or("?")).into_owned();
    let big = || json!({"size": "Large", "weight": "Bolder"});
    let bold = || json!({"weight": "Bolder"});
    let mut body = vec![
        line(vec![
            run("Approval needed: ", big()),
            run(
                &format!("{} / {}", text(&a["server"]), text(&a["tool"])),
                big(),
            ),
        ]),
        fact("Asked by", &text(&a["principal"]["id"])),
        fact(
            "Client",
            &laid_out(a["client"]["name"].as_str().unwrap_or("unknown client")),
        ),
        fact("Expires", &text(&a["expires_at"])),
        fact("Approval", &text(&a["id"])),
    ];
    if let Some(d) = a["tool_description"].as_str() {
        body.push(line(vec![run(&laid_out(d), json!({"isSubtle": true}))]));
    }
    body.push(line(vec![run("Arguments", bold())]));
    body.push(line(vec![run(
        &laid_out(&arguments_summary(&a["arguments"])),
        json!({"fontType": "Monospace"}),
    )]));
    body.push(line(vec![run("Why it is held", bold())]));
    for reason in a["reasons"].as_array().into_iter().flatten() {
        body.push(line(vec![run(&format!("- {}", text(reason)), json!({}))]));
    }
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

/// A `TextRun` (never read as Markdown) with `style`'s properties.
fn run(text: &str, style: Value) -> Value {
    let mut run = json!({"type": "TextRun", "text": text});
    if let (Some(run), Value::Object(style)) = (run.as_object_mut(), style) {
        run.extend(style);
    }
    run
}

/// A `RichTextBlock`: one line of runs.
fn line(inlines: Vec<Value>) -> Value {
    json!({"type": "RichTextBlock", "inlines": inlines})
}

/// One labelled line: the label bold, the value plain text.
fn fact(label: &str, value: &str) -> Value {
    line(vec![
        run(&format!("{label}: "), json!({"weight": "Bolder"})),
        run(value, json!({})),
    ])
}
