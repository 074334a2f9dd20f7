//! JSON-RPC 2.0 message shapes as the firewall sees them.
//!
//! The firewall relays messages it does not need to understand (new
//! protocol fields, `_meta`, extensions) byte-for-byte in meaning, so a
//! message is kept as its parsed `serde_json::Value` and only the envelope
//! (`id`, `method`, `params`, `result`, `error`) is classified here. Typed
//! MCP models would drop unknown fields on the way through; see the crate
//! README for why the proxy does not round-trip messages through rmcp's
//! model types.
//!
//! Invariant: [`classify`] never panics on any input; anything that is not a
//! well-formed JSON-RPC 2.0 request, notification or response is a
//! [`MessageError`] that the caller answers with a JSON-RPC error.

use serde_json::{Map, Value, json};

/// Standard JSON-RPC error codes, plus the MCP-specific ones the firewall uses.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// A request the policy refused (resources/read, prompts/get; a refused
    /// tools/call is a tool result with `isError` instead, so the model sees it).
    pub const POLICY_DENIED: i64 = -32001;
    /// MCP's "resource not found".
    pub const RESOURCE_NOT_FOUND: i64 = -32002;
    /// The upstream server for this request is not running or went away.
    pub const UPSTREAM_UNAVAILABLE: i64 = -32003;
    /// The request was refused before forwarding because the audit record
    /// could not be written (fail closed).
    pub const AUDIT_UNAVAILABLE: i64 = -32004;
    /// The session has as many requests in flight as it may: this one was
    /// not worked on; send it again once answers come back.
    pub const TOO_MANY_REQUESTS: i64 = -32005;
}

/// One classified JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    Notification {
        method: String,
        params: Value,
    },
    Response {
        id: Value,
        /// `Ok(result)` or `Err(error object)`.
        body: Result<Value, Value>,
    },
}

/// Why a line could not be understood as a JSON-RPC message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MessageError {
    #[error("parse error: {0}")]
    Parse(String),
    #[error("invalid request: {reason}")]
    Invalid { id: Value, reason: String },
}

impl MessageError {
    /// The JSON-RPC error response that answers this failure.
    pub fn to_response(&self) -> Value {
        match self {
            MessageError::Parse(_) => {
                error_response(&Value::Null, code::PARSE_ERROR, &self.to_string(), None)
            }
            MessageError::Invalid { id, .. } => {
                error_response(id, code::INVALID_REQUEST, &self.to_string(), None)
            }
        }
    }
}

/// Parse and classify one line of input.
pub fn parse(line: &str) -> Result<Message, MessageError> {
    let value: Value =
        serde_json::from_str(line).map_err(|e| MessageError::Parse(e.to_string()))?;
    classify(value)
}

/// Parse and classify one line of raw bytes (invalid UTF-8 is a parse error).
pub fn parse_bytes(line: &[u8]) -> Result<Message, MessageError> {
    let value: Value =
        serde_json::from_slice(line).map_err(|e| MessageError::Parse(e.to_string()))?;
    classify(value)
}

/// Classify an already parsed JSON value.
pub fn classify(value: Value) -> Result<Message, MessageError> {
    let Value::Object(mut obj) = value else {
        let reason = if value.is_array() {
            "batches are not supported (removed in MCP 2025-06-18)"
        } else {
            "a message must be a JSON object"
        };
        return Err(invalid(Value::Null, reason));
    };
    let id = obj.remove("id");
    if let Some(id) = &id
        && !valid_id(id)
    {
        return Err(invalid(Value::Null, "id must be a string or an integer"));
    }
    if obj.get("jsonrpc") != Some(&Value::String("2.0".into())) {
        return Err(invalid(
            id.unwrap_or(Value::Null),
            "jsonrpc must be \"2.0\"",
        ));
    }
    let params = obj.remove("params").unwrap_or(Value::Null);
    if !(params.is_null() || params.is_object() || params.is_array()) {
        return Err(invalid(
            id.unwrap_or(Value::Null),
            "params must be an object or array",
        ));
    }
    match (obj.remove("method"), id) {
        (Some(Value::String(method)), Some(id)) => Ok(Message::Request { id, method, params }),
        (Some(Value::String(method)), None) => Ok(Message::Notification { method, params }),
        (Some(_), id) => Err(invalid(
            id.unwrap_or(Value::Null),
            "method must be a string",
        )),
        (None, Some(id)) => response(obj, id),
        (None, None) => Err(invalid(Value::Null, "message has neither method nor id")),
    }
}

fn response(mut obj: Map<String, Value>, id: Value) -> Result<Message, MessageError> {
    match (obj.remove("result"), obj.remove("error")) {
        (Some(result), None) => Ok(Message::Response {
            id,
            body: Ok(result),
        }),
        (None, Some(error)) if error.is_object() => Ok(Message::Response {
            id,
            body: Err(error),
        }),
        _ => Err(invalid(
            id,
            "a response needs exactly one of result or error (an object)",
        )),
    }
}

fn valid_id(id: &Value) -> bool {
    id.is_string() || id.is_i64() || id.is_u64()
}

fn invalid(id: Value, reason: &str) -> MessageError {
    MessageError::Invalid {
        id,
        reason: reason.to_string(),
    }
}

/// A request message.
pub fn request(id: &Value, method: &str, params: &Value) -> Value {
    let mut msg = json!({"jsonrpc": "2.0", "id": id, "method": method});
    if !params.is_null() {
        msg["params"] = params.clone();
    }
    msg
}

/// A notification message.
pub fn notification(method: &str, params: &Value) -> Value {
    let mut msg = json!({"jsonrpc": "2.0", "method": method});
    if !params.is_null() {
        msg["params"] = params.clone();
    }
    msg
}

/// The error answering a message refused before it was read whole (too
/// large, over the memory budget, too slow): under the request's id when
/// `prefix`, its first bytes, names one ([`request_id`]), else a null id.
pub fn unread_refusal(prefix: &[u8], reason: &str) -> Value {
    let id = request_id(prefix).unwrap_or_default();
    error_response(&id, code::INVALID_REQUEST, reason, None)
}

/// A successful response.
pub fn result_response(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// An error response; `data` is left out when `None`.
pub fn error_response(id: &Value, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut error = json!({"code": code, "message": message});
    if let Some(data) = data {
        error["data"] = data;
    }
    json!({"jsonrpc": "2.0", "id": id, "error": error})
}

/// A response carrying either a result or an error object as received.
pub fn response_message(id: &Value, body: Result<Value, Value>) -> Value {
    match body {
        Ok(result) => result_response(id, result),
        Err(error) => json!({"jsonrpc": "2.0", "id": id, "error": error}),
    }
}

/// An error object (the `error` member of a response).
pub fn error_object(code: i64, message: &str) -> Value {
    json!({"code": code, "message": message})
}

/// The id of a request too big to be read, from its first bytes: the
/// top-level `id` member, if it is a number or a string that ends within
/// `prefix` and a top-level `method` member is there too (a response's id
/// is one the firewall gave out, not the client's: answering it as the
/// client's request would fail the wrong one). An `id` nested in `params`
/// is never taken, nor one the end of `prefix` cuts off (`12` of `123`):
/// answering the wrong request would be worse than a null id.
pub fn request_id(prefix: &[u8]) -> Option<Value> {
    let (mut id, mut method) = (None, false);
    let mut at = skip_space(prefix, 0);
    if prefix.get(at) != Some(&b'{') {
        return None;
    }
    at += 1;
    while let Some((key, value)) = member(prefix, &mut at) {
        match key.as_str() {
            "id" => id = serde_json::from_slice::<Value>(value).ok(),
            "method" => method = true,
            _ => {}
        }
        at = skip_space(prefix, at);
        if prefix.get(at) != Some(&b',') {
            break;
        }
        at += 1;
    }
    id.filter(|id| method && (id.is_string() || id.is_number()))
}

/// The object member starting at `at` (after any space), whole within
/// `bytes`: its key and its value's text; `at` moves past it.
fn member<'a>(bytes: &'a [u8], at: &mut usize) -> Option<(String, &'a [u8])> {
    let start = skip_space(bytes, *at);
    if bytes.get(start) != Some(&b'"') {
        return None;
    }
    let key_end = value_end(bytes, start)?;
    let key = serde_json::from_slice(&bytes[start..key_end]).ok()?;
    let colon = skip_space(bytes, key_end);
    if bytes.get(colon) != Some(&b':') {
        return None;
    }
    let value = skip_space(bytes, colon + 1);
    let end = value_end(bytes, value)?;
    *at = end;
    Some((key, &bytes[value..end]))
}

fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(|b| b" \t\r\n".contains(b)) {
        at += 1;
    }
    at
}

/// Where the JSON value starting at `at` ends, if it ends within `bytes`
/// (a scalar only counts as ended where something follows it).
fn value_end(bytes: &[u8], at: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = at;
    loop {
        match *bytes.get(i)? {
            b'"' => {
                i += 1;
                loop {
                    match *bytes.get(i)? {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                i += 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' if depth > 0 => {
                depth -= 1;
                i += 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n' if depth == 0 => {
                return (i > at).then_some(i);
            }
            _ => i += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_the_three_kinds() {
        let req = parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
        assert!(matches!(req, Message::Request { ref method, .. } if method == "tools/list"));
        let note = parse(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert!(matches!(note, Message::Notification { .. }));
        let ok = parse(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
        assert!(matches!(ok, Message::Response { body: Ok(_), .. }));
        let err = parse(r#"{"jsonrpc":"2.0","id":2,"error":{"code":1,"message":"x"}}"#).unwrap();
        assert!(matches!(err, Message::Response { body: Err(_), .. }));
    }

    #[test]
    fn rejects_malformed_input_with_the_right_code() {
        let cases = [
            ("{not json", code::PARSE_ERROR),
            ("[]", code::INVALID_REQUEST),
            ("42", code::INVALID_REQUEST),
            (r#"{"id":1,"method":"x"}"#, code::INVALID_REQUEST),
            (
                r#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#,
                code::INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#,
                code::INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":7}"#,
                code::INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"x","params":"s"}"#,
                code::INVALID_REQUEST,
            ),
            (r#"{"jsonrpc":"2.0","id":1}"#, code::INVALID_REQUEST),
            (r#"{"jsonrpc":"2.0"}"#, code::INVALID_REQUEST),
        ];
        for (line, want) in cases {
            let err = parse(line).expect_err(line);
            assert_eq!(err.to_response()["error"]["code"], want, "{line}");
        }
    }

    #[test]
    fn invalid_request_keeps_the_id_when_it_is_usable() {
        let err = parse(r#"{"jsonrpc":"1.0","id":9,"method":"x"}"#).unwrap_err();
        assert_eq!(err.to_response()["id"], 9);
    }

    /// The id of a message too big to read is its top-level `id`, wherever
    /// it stands among the members, never one nested in `params`, never one
    /// the prefix cuts off.
    #[test]
    fn the_request_id_is_found_in_a_prefix_and_only_it() {
        let id = |text: &str| request_id(text.as_bytes());
        assert_eq!(
            id(r#"{"jsonrpc":"2.0","id":77,"method":"tools/call","params":{"#),
            Some(json!(77))
        );
        assert_eq!(
            id(r#" { "method" : "x", "id" : "a\"b" , "params""#),
            Some(json!("a\"b"))
        );
        assert_eq!(id(r#"{"\u0069d":5,"method":"x","#), Some(json!(5)));
        // A response (no method): its id is the firewall's, not the client's.
        assert_eq!(id(r#"{"jsonrpc":"2.0","id":3,"result":{"content":"#), None);
        assert_eq!(
            id(
                r#"{"jsonrpc":"2.0","params":{"arguments":{"id":5,"s":"}\"{"}},"id":9,"method":"a","#
            ),
            Some(json!(9))
        );
        // The top-level id is beyond the prefix: not the nested one.
        assert_eq!(
            id(r#"{"method":"tools/call","params":{"arguments":{"id":5,"text":"xxx"#),
            None
        );
        // Cut off: `12` may be `123`, `"ab` may go on.
        assert_eq!(id(r#"{"method":"x","id":12"#), None);
        assert_eq!(id(r#"{"method":"x","id":"ab"#), None);
        assert_eq!(id(r#"{"id":null,"method":"x""#), None);
        assert_eq!(id(r#"{"id":{"a":1},"method":"x","#), None);
        assert_eq!(id(r#"[{"id":1}]"#), None);
        assert_eq!(id(""), None);
        assert_eq!(id(r#"{"id" 1,"#), None);
    }
}
