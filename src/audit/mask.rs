//! Masking secrets out of values before they are written to the audit log.
//!
//! Job: replace the value of every object key that names a secret with
//! [`MASK`], at any depth and inside arrays, leaving everything else as is.
//!
//! Invariants:
//! - key names are compared case-insensitively and ignoring `-` and `_`, so
//!   `api_key`, `API-Key` and `apiKey` are one name;
//! - a matched key keeps its place; its whole value (string, number, object,
//!   array) becomes `"***"`, so nested secrets under it are gone too;
//! - matching is on the whole (normalized) key, not a substring: `token` masks
//!   `Token` and `to_ken` but not `tokenizer` or `token_count`.
//!
//! Masking is best effort by name: a secret under an innocent key (or inside a
//! string) is not found. Policies that must not log some arguments at all
//! should leave them out of the record.

use serde_json::Value;

/// What a masked value is replaced with.
pub const MASK: &str = "***";

/// Key names masked by [`MaskRules::default_rules`].
pub const DEFAULT_MASKED_FIELDS: [&str; 12] = [
    "password",
    "passwd",
    "secret",
    "token",
    "access_token",
    "refresh_token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "private_key",
    "client_secret",
];

/// The set of key names to mask, stored normalized (lowercase, no `-`/`_`),
/// sorted and without repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskRules {
    fields: Vec<String>,
}

impl MaskRules {
    /// Rules masking exactly `fields` (compared as described in the module docs).
    pub fn new(fields: impl IntoIterator<Item = String>) -> Self {
        let mut fields: Vec<String> = fields.into_iter().map(|f| normalize(&f)).collect();
        fields.sort_unstable();
        fields.dedup();
        MaskRules { fields }
    }

    /// The common secret names: [`DEFAULT_MASKED_FIELDS`].
    pub fn default_rules() -> Self {
        Self::new(DEFAULT_MASKED_FIELDS.iter().map(|f| f.to_string()))
    }

    fn matches(&self, key: &str) -> bool {
        // Performance: every key of every record goes through here. Keys are
        // normalized on the stack (ASCII byte by byte), allocating only for
        // keys too long for the buffer, and looked up by binary search: no
        // hashing.
        let mut buf = [0u8; 64];
        let mut len = 0;
        if key.is_ascii() {
            for b in key.bytes().filter(|b| !matches!(b, b'-' | b'_')) {
                let Some(slot) = buf.get_mut(len) else {
                    return self.contains(normalize(key).as_bytes());
                };
                *slot = b.to_ascii_lowercase();
                len += 1;
            }
            return self.contains(&buf[..len]);
        }
        for c in normalized(key) {
            let Some(slot) = buf.get_mut(len..len + c.len_utf8()) else {
                return self.contains(normalize(key).as_bytes());
            };
            c.encode_utf8(slot);
            len += c.len_utf8();
        }
        self.contains(&buf[..len])
    }

    fn contains(&self, normalized: &[u8]) -> bool {
        self.fields
            .binary_search_by(|f| f.as_bytes().cmp(normalized))
            .is_ok()
    }
}

impl Default for MaskRules {
    fn default() -> Self {
        Self::default_rules()
    }
}

/// A copy of `value` with every matching key's value replaced by [`MASK`].
pub fn mask(value: &Value, rules: &MaskRules) -> Value {
    mask_owned(value.clone(), rules)
}

/// [`mask`] of a value the caller no longer needs: masked where it lies,
/// without copying the rest.
pub fn mask_owned(mut value: Value, rules: &MaskRules) -> Value {
    mask_in_place(&mut value, rules);
    value
}

fn mask_in_place(value: &mut Value, rules: &MaskRules) {
    match value {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if rules.matches(key) {
                    *value = Value::String(MASK.into());
                } else {
                    mask_in_place(value, rules);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| mask_in_place(v, rules)),
        _ => {}
    }
}

fn normalize(name: &str) -> String {
    normalized(name).collect()
}

/// `name` lower-cased, without `-` and `_`.
fn normalized(name: &str) -> impl Iterator<Item = char> + '_ {
    name.chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_at_depth_and_inside_arrays() {
        let v = json!({
            "path": "/srv/x",
            "password": "hunter2",
            "headers": [{"Authorization": "Bearer abc", "Accept": "*/*"}, {"x": [{"Api-Key": 7}]}],
            "nested": {"deeper": {"Client_Secret": {"a": "b"}, "keep": true}},
        });
        let masked = mask(&v, &MaskRules::default_rules());
        assert_eq!(
            masked,
            json!({
                "path": "/srv/x",
                "password": "***",
                "headers": [{"Authorization": "***", "Accept": "*/*"}, {"x": [{"Api-Key": "***"}]}],
                "nested": {"deeper": {"Client_Secret": "***", "keep": true}},
            })
        );
    }

    #[test]
    fn compares_case_insensitively_ignoring_dashes_and_underscores() {
        let rules = MaskRules::default_rules();
        for key in [
            "TOKEN",
            "access-token",
            "AccessToken",
            "API_KEY",
            "apiKey",
            "private-key",
            "Cookie",
        ] {
            assert!(rules.matches(key), "{key} should be masked");
        }
        for key in ["tokenizer", "token_count", "path", "secretary", ""] {
            assert!(!rules.matches(key), "{key} should not be masked");
        }
    }

    #[test]
    fn custom_rules_are_normalized() {
        let rules = MaskRules::new(["X-Session-ID".to_string()]);
        let v = json!({"x_session_id": "s", "password": "p"});
        assert_eq!(
            mask(&v, &rules),
            json!({"x_session_id": "***", "password": "p"})
        );
    }

    /// Masking in place masks at every depth, long keys and keys whose
    /// lower case is longer (`İ`) included, as masking a copy does.
    #[test]
    fn masking_in_place_matches_masking_a_copy() {
        let long = "x".repeat(100);
        let rules = MaskRules::new([long.clone(), "İd".to_string(), "token".to_string()]);
        let v = json!({
            long.to_uppercase(): 1, "İD": 2, "i̇d": 3, "TOKEN": [{"token": 4}],
            "list": [{"To-Ken": 5}, {"keep": 6}], "x": {"y": {"token": 7}},
        });
        let copied = mask(&v, &rules);
        assert_eq!(mask_owned(v, &rules), copied);
        assert_eq!(copied[long.to_uppercase()], "***");
        assert_eq!(copied["İD"], "***");
        assert_eq!(copied["list"][1]["keep"], 6);
        assert_eq!(copied["x"]["y"]["token"], "***");
    }

    /// The stack and binary-search lookup agrees with normalizing each key
    /// and comparing it with every field, for many rules and every ASCII
    /// byte in a key.
    #[test]
    fn lookup_agrees_with_plain_comparison() {
        let names: Vec<String> = (0..50).map(|i| format!("Field_{i}-x")).collect();
        let rules = MaskRules::new(
            names
                .iter()
                .cloned()
                .chain(DEFAULT_MASKED_FIELDS.map(String::from)),
        );
        let mut keys: Vec<String> = names.iter().map(|n| n.to_uppercase()).collect();
        keys.extend((0u8..0x80).map(|b| format!("to{}ken", char::from(b))));
        keys.extend(["field_50_x", "field", "Ωtoken", &"x".repeat(70)].map(String::from));
        for key in keys {
            let plain = rules.fields.iter().any(|f| *f == normalize(&key));
            assert_eq!(rules.matches(&key), plain, "{key:?}");
        }
    }

    #[test]
    fn leaves_non_objects_alone() {
        let rules = MaskRules::default_rules();
        for v in [
            json!(null),
            json!("password"),
            json!([1, "token"]),
            json!(3.5),
        ] {
            assert_eq!(mask(&v, &rules), v);
        }
    }
}
