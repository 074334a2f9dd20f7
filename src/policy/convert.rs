//! JSON -> regorus values, built directly (no serde visitor), with parts
//! of the document already converted spliced in.
//!
//! A decision's input is mostly the same from call to call: the session's
//! history alone is 32 small objects. Converting the whole document on
//! every call was most of an allow-all decision's cost (issue 11); the
//! session now keeps its history converted, entry by entry, and the
//! decision converts only the rest.

use std::collections::BTreeMap;

use regorus::Value as Rego;
use serde_json::Value as Json;

use super::error::PolicyError;

/// A value already converted, and where in the document it goes: `path`
/// names object keys from the root; the object at `path` minus its last
/// key must exist in the JSON document for the value to be spliced in.
pub struct Splice<'a> {
    pub path: &'a [&'a str],
    pub value: Rego,
}

/// Convert `json`.
pub fn to_rego(json: &Json) -> Result<Rego, PolicyError> {
    convert(json, &[])
}

/// Convert `json`, putting each splice's value at its path instead of
/// converting what the document holds there (or adding the key).
pub fn to_rego_spliced(json: &Json, splices: &[Splice<'_>]) -> Result<Rego, PolicyError> {
    convert(json, splices)
}

/// Convert the object `json` over `base`, an object already converted:
/// each field of `json` that `base` holds is `base`'s value, shared rather
/// than converted again; the others are converted. For a part of the
/// document converted once and completed per call (a catalogue entry's
/// tool, its findings and pin added). The fields taken from `base` must
/// hold in `json` what they hold there; a `json` that is not an object, or
/// a `base` that is not one, is converted as is.
pub fn to_rego_over(json: &Json, base: &Rego) -> Result<Rego, PolicyError> {
    let (Json::Object(fields), Ok(known)) = (json, base.as_object()) else {
        return convert(json, &[]);
    };
    let mut map = BTreeMap::new();
    for (key, value) in fields {
        let key = Rego::String(key.as_str().into());
        let value = match known.get(&key) {
            Some(shared) => shared.clone(),
            None => convert(value, &[])?,
        };
        map.insert(key, value);
    }
    Ok(Rego::from(map))
}

fn convert(json: &Json, splices: &[Splice<'_>]) -> Result<Rego, PolicyError> {
    Ok(match json {
        Json::Null => Rego::Null,
        Json::Bool(b) => Rego::Bool(*b),
        Json::Number(n) => number(n)?,
        Json::String(s) => Rego::String(s.as_str().into()),
        Json::Array(items) => Rego::from(
            items
                .iter()
                .map(|item| convert(item, &[]))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Json::Object(fields) => {
            let mut map = BTreeMap::new();
            for (key, value) in fields {
                if splices.iter().any(|s| s.path == [key.as_str()]) {
                    continue;
                }
                let below: Vec<Splice<'_>> = splices
                    .iter()
                    .filter(|s| s.path.len() > 1 && s.path[0] == key)
                    .map(|s| Splice {
                        path: &s.path[1..],
                        value: s.value.clone(),
                    })
                    .collect();
                map.insert(Rego::String(key.as_str().into()), convert(value, &below)?);
            }
            for splice in splices.iter().filter(|s| s.path.len() == 1) {
                map.insert(Rego::String(splice.path[0].into()), splice.value.clone());
            }
            Rego::from(map)
        }
    })
}

fn number(n: &serde_json::Number) -> Result<Rego, PolicyError> {
    if let Some(u) = n.as_u64() {
        Ok(Rego::from(u))
    } else if let Some(i) = n.as_i64() {
        Ok(Rego::from(i))
    } else {
        match n.as_f64() {
            Some(f) if f.is_finite() => Ok(Rego::from(f)),
            _ => Err(PolicyError::Eval {
                message: format!("input document is not representable: number {n}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The direct conversion gives exactly what regorus's own
    /// deserialization gives.
    #[test]
    fn same_as_regorus_deserialization() {
        let doc = json!({
            "s": "text", "n": 3, "neg": -4, "f": 1.5, "big": u64::MAX, "b": true,
            "null": null, "a": [1, "two", {"three": [3]}], "o": {"k": {"deep": []}},
            "unicode": "é\u{200b}", "": "empty key",
        });
        let ours = to_rego(&doc).unwrap();
        let theirs = Rego::from_json_str(&doc.to_string()).unwrap();
        assert_eq!(ours, theirs);
    }

    /// Fields `base` holds are shared with it; the rest are converted, and
    /// the whole equals the conversion of the whole.
    #[test]
    fn converted_over_a_base_shares_its_fields() {
        let base = to_rego(&json!({"name": "echo", "schema": {"type": "object"}})).unwrap();
        let doc = json!({"name": "echo", "schema": {"type": "object"}, "pin": {"status": "new"}});
        let over = to_rego_over(&doc, &base).unwrap();
        assert_eq!(over, to_rego(&doc).unwrap());
        let (Rego::Object(ours), Rego::Object(theirs)) = (&over["schema"], &base["schema"]) else {
            panic!("objects expected");
        };
        assert!(std::sync::Arc::ptr_eq(ours, theirs));
        assert_eq!(
            to_rego_over(&json!([1]), &base).unwrap(),
            to_rego(&json!([1])).unwrap()
        );
    }

    #[test]
    fn splices_replace_and_add() {
        let doc = json!({"session": {"id": "s", "history": [{"old": 1}]}, "x": 1});
        let history = Rego::from(vec![Rego::from("new")]);
        let spliced = to_rego_spliced(
            &doc,
            &[Splice {
                path: &["session", "history"],
                value: history,
            }],
        )
        .unwrap();
        let expected = json!({"session": {"id": "s", "history": ["new"]}, "x": 1});
        assert_eq!(spliced, to_rego(&expected).unwrap());
        let added = to_rego_spliced(
            &json!({}),
            &[Splice {
                path: &["extra"],
                value: Rego::Bool(true),
            }],
        )
        .unwrap();
        assert_eq!(added, to_rego(&json!({"extra": true})).unwrap());
    }
}
