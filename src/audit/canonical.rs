//! Canonical JSON and the hash format used by the audit chain.
//!
//! Job: turn a `serde_json::Value` into one exact byte string so that a record
//! hashes the same on every machine and every build, and so the verifier can
//! demand that a line on disk is byte-for-byte the canonical form of itself.
//!
//! Invariants:
//! - object keys are sorted by byte order at every depth. We sort explicitly
//!   rather than trusting `serde_json::Map`'s iteration order, because any crate
//!   in the build may turn on serde_json's `preserve_order` feature, which would
//!   silently change the order and so every hash;
//! - no whitespace anywhere;
//! - strings and numbers are written exactly as serde_json writes them (its
//!   string escaping and its shortest round-trip float formatting), so parsing a
//!   canonical line and re-serializing it gives the same bytes back.
//!
//! This is close to, but not claimed to be, RFC 8785 (JCS): JCS formats numbers
//! the ECMAScript way and sorts keys by UTF-16 code units. Both sides of our
//! chain (writer and verifier) use this one function, which is all that matters
//! for tamper evidence.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Prefix of every hash in the log, so the algorithm is visible in the data and
/// a later change of algorithm cannot be confused with this one.
pub const HASH_PREFIX: &str = "sha256:";

/// Serialize `v` deterministically: sorted keys, no whitespace.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_value(v, &mut out);
    out
}

/// `sha256_tagged(canonical_json(v))`, without the text: it is hashed as it
/// is written. A 20 MB tool result's digest held the text beside the
/// result, in a buffer regrown by doubling (up to three times the result at
/// once).
pub fn canonical_digest(v: &Value) -> String {
    // The buffer grows to at most a block: a small result, every call's,
    // costs no 64 KB allocation.
    let mut out = Hashing {
        hasher: Sha256::new(),
        buffer: Vec::new(),
    };
    write_value(v, &mut out);
    out.hasher.update(&out.buffer);
    format!("{HASH_PREFIX}{}", hex::encode(out.hasher.finalize()))
}

/// Where canonical text goes: a `String`, or a hash.
pub(super) trait Out {
    fn push_str(&mut self, s: &str);

    /// Room for `n` more bytes, where that means anything.
    fn reserve(&mut self, _n: usize) {}

    fn push(&mut self, c: char) {
        self.push_str(c.encode_utf8(&mut [0; 4]));
    }

    /// `s` as a JSON string, escaped as serde_json escapes it.
    fn push_escaped(&mut self, s: &str);
}

impl Out for String {
    fn push_str(&mut self, s: &str) {
        String::push_str(self, s);
    }

    fn reserve(&mut self, n: usize) {
        String::reserve(self, n);
    }

    fn push(&mut self, c: char) {
        String::push(self, c);
    }

    fn push_escaped(&mut self, s: &str) {
        // Serializing a `&str` cannot fail; the fallback is unreachable but
        // keeps this function total without a panic path.
        match serde_json::to_string(s) {
            Ok(quoted) => self.push_str(&quoted),
            Err(_) => self.push_str("\"\""),
        }
    }
}

/// Text is hashed in blocks of this size.
const HASH_BUFFER_BYTES: usize = 64 * 1024;

/// Canonical text, hashed as it is written.
struct Hashing {
    hasher: Sha256,
    buffer: Vec<u8>,
}

impl Out for Hashing {
    fn push_str(&mut self, s: &str) {
        let _ = std::io::Write::write(self, s.as_bytes());
    }

    fn push_escaped(&mut self, s: &str) {
        // serde_json writes the escaped string in runs, straight in here.
        let _ = serde_json::to_writer(&mut *self, s);
    }
}

impl std::io::Write for Hashing {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.buffer.len() + bytes.len() > HASH_BUFFER_BYTES {
            self.hasher.update(&self.buffer);
            self.buffer.clear();
        }
        match bytes.len() > HASH_BUFFER_BYTES {
            true => self.hasher.update(bytes),
            false => self.buffer.extend_from_slice(bytes),
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Text in canonical form, made only here: a part of a record rendered
/// ahead of time (a session's remembered decisions are rendered once, not
/// once per record that repeats them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical(String);

impl Canonical {
    /// `v` in canonical form.
    pub fn of(v: &Value) -> Canonical {
        Canonical(canonical_json(v))
    }

    /// The array of `items`, in order.
    pub fn array<'a>(items: impl IntoIterator<Item = &'a Canonical>) -> Canonical {
        let mut out = String::from("[");
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&item.0);
        }
        out.push(']');
        Canonical(out)
    }

    /// `v` in canonical form, with `part` written in place of the `null` at
    /// `path` (object keys from the root): exactly `Canonical::of` of `v`
    /// with that value put there. Where `path` does not lead to a `null`
    /// (masking replaced an object on the way, say), `v` as it is.
    pub fn spliced(v: &Value, path: &[&str], part: &Canonical) -> Canonical {
        let mut out = String::new();
        write_spliced(v, path, part, &mut out);
        Canonical(out)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(super) fn into_string(self) -> String {
        self.0
    }
}

fn write_spliced(v: &Value, path: &[&str], part: &Canonical, out: &mut String) {
    match (path.split_first(), v) {
        (None, Value::Null) => out.push_str(&part.0),
        (Some((key, below)), Value::Object(map)) => write_object(map, out, |k, value, out| {
            if k == *key {
                write_spliced(value, below, part, out);
            } else {
                write_value(value, out);
            }
        }),
        _ => write_value(v, out),
    }
}

/// `"sha256:" + 64 lowercase hex digits` of `bytes`.
pub fn sha256_tagged(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    format!("{HASH_PREFIX}{}", hex::encode(digest))
}

fn write_value(v: &Value, out: &mut impl Out) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        // `Number`'s Display is the same formatter serde_json's serializer uses.
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(map, out, |_, value, out| write_value(value, out)),
    }
}

/// `map` with its keys in order, each value written by `value`.
fn write_object<O: Out>(
    map: &serde_json::Map<String, Value>,
    out: &mut O,
    mut value: impl FnMut(&str, &Value, &mut O),
) {
    // `str`'s Ord is byte order of the UTF-8 encoding.
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push('{');
    for (i, (key, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(key, out);
        out.push(':');
        value(key, v, out);
    }
    out.push('}');
}

pub(super) fn write_string(s: &str, out: &mut impl Out) {
    // Performance: most strings (keys, ids, names) need no escape, and
    // serde_json escapes only `"`, `\\` and control characters; such a
    // string is written as it is, without serde_json's own buffer.
    if !needs_escape(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push('"');
        out.push_str(s);
        out.push('"');
        return;
    }
    out.push_escaped(s);
}

/// Whether `bytes` hold a `"`, a `\\` or a control character. Checked 64
/// bytes at a time without a branch per byte, which the compiler turns
/// into vector compares: a byte-by-byte `any` was ~4 % of a call's
/// instructions, every string of both records going through it.
fn needs_escape(bytes: &[u8]) -> bool {
    bytes.chunks(64).any(|chunk| {
        chunk.iter().fold(false, |found, &b| {
            found | (b < 0x20) | (b == b'"') | (b == b'\\')
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The streamed digest is the digest of the text, for every shape: keys
    /// out of order, escapes, strings longer than the hash's block (written
    /// straight through) and runs of small writes crossing blocks.
    #[test]
    fn a_digest_hashed_as_written_is_the_digest_of_the_text() {
        let long = "a\"b\\c\n\u{1}é ".repeat(20_000);
        let plain = "x".repeat(HASH_BUFFER_BYTES + 7);
        let values = [
            json!(null),
            json!({"z": 1, "a": [true, false, null, 1.5, -3, "s"], "m": {"y": "\u{7f}", "b": ""}}),
            json!({"text": long, "plain": plain, "n": 12345678901234567u64}),
            json!(
                (0..20_000)
                    .map(|i| json!({"k": i, "v": format!("{i}\t")}))
                    .collect::<Vec<_>>()
            ),
        ];
        for v in values {
            assert_eq!(
                canonical_digest(&v),
                sha256_tagged(canonical_json(&v).as_bytes())
            );
        }
    }

    #[test]
    fn every_byte_that_needs_an_escape_is_found_wherever_it_is() {
        for bad in (0u8..0x20).chain([b'"', b'\\']) {
            for at in [0, 1, 63, 64, 65, 127, 130] {
                let mut text = vec![b'a'; 131];
                text[at] = bad;
                let text = String::from_utf8(text).unwrap();
                assert_eq!(
                    canonical_json(&Value::String(text.clone())),
                    serde_json::to_string(&text).unwrap(),
                    "byte {bad:#x} at {at}"
                );
            }
        }
        assert!(!needs_escape("é ü 日本 ok ~\x7f".as_bytes()));
    }

    #[test]
    fn sorts_keys_recursively_and_drops_whitespace() {
        let v = json!({"b": 1, "a": {"z": [3, {"y": null, "x": true}], "c": "s"}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":"s","z":[3,{"x":true,"y":null}]},"b":1}"#
        );
    }

    #[test]
    fn key_order_is_byte_order() {
        // Uppercase sorts before lowercase; multi-byte UTF-8 sorts after ASCII.
        let v = json!({"b": 0, "B": 0, "é": 0, "a": 0, "": 0});
        assert_eq!(canonical_json(&v), r#"{"":0,"B":0,"a":0,"b":0,"é":0}"#);
    }

    #[test]
    fn does_not_depend_on_insertion_order() {
        let mut m1 = serde_json::Map::new();
        m1.insert("x".into(), json!(1));
        m1.insert("a".into(), json!(2));
        let mut m2 = serde_json::Map::new();
        m2.insert("a".into(), json!(2));
        m2.insert("x".into(), json!(1));
        assert_eq!(
            canonical_json(&Value::Object(m1)),
            canonical_json(&Value::Object(m2))
        );
    }

    #[test]
    fn strings_and_numbers_as_serde_json_writes_them() {
        let v = json!(["a\"b\\c\n\u{1}", "ü/", 1.5, -0.0, 1e300, u64::MAX, i64::MIN]);
        assert_eq!(canonical_json(&v), serde_json::to_string(&v).unwrap());
    }

    #[test]
    fn every_string_as_serde_json_writes_it() {
        // The unescaped fast path and serde_json's escaping agree on every
        // ASCII byte, alone and next to text, and on non-ASCII text.
        let mut cases: Vec<String> = (0u8..0x80)
            .flat_map(|b| {
                let c = char::from(b);
                [c.to_string(), format!("a{c}b")]
            })
            .collect();
        cases.extend(
            ["", "ü/é", "\u{2028}\u{2029}", "\u{7f}", "日本", "😀 \u{0}"].map(String::from),
        );
        // Every pair of ASCII bytes, and long text with escapes between
        // runs of plain and non-ASCII text.
        for a in 0u8..0x80 {
            for b in 0u8..0x80 {
                cases.push([char::from(a), char::from(b)].iter().collect());
            }
        }
        cases.push("fn main() {\n\t\"é\\\u{1}\u{1f}\"\r\n}\u{8}\u{c}日本".repeat(500));
        for case in cases {
            let v = Value::String(case.clone());
            assert_eq!(
                canonical_json(&v),
                serde_json::to_string(&v).unwrap(),
                "{case:?}"
            );
        }
    }

    /// A spliced rendering is the rendering of the whole value; where the
    /// path does not end at a `null`, nothing is spliced.
    #[test]
    fn spliced_parts_render_as_the_whole() {
        let items = [json!({"b": 1, "a": "x\"y"}), json!([true, null])];
        let part = Canonical::array(items.iter().map(Canonical::of).collect::<Vec<_>>().iter());
        let whole = |history: Value| json!({"z": 0, "session": {"id": "s", "history": history, "cwd": "/"}, "a": [1]});
        let spliced = Canonical::spliced(&whole(json!(null)), &["session", "history"], &part);
        assert_eq!(
            spliced.as_str(),
            canonical_json(&whole(Value::Array(items.to_vec())))
        );
        for unspliced in [
            whole(json!("***")),
            json!({"session": "***"}),
            json!({"session": {"id": "s"}}),
            json!({"z": null}),
        ] {
            let rendered = Canonical::spliced(&unspliced, &["session", "history"], &part);
            assert_eq!(rendered.as_str(), canonical_json(&unspliced));
        }
        assert_eq!(Canonical::array([]).as_str(), "[]");
    }

    #[test]
    fn round_trips_through_parse() {
        let v = json!({"k": [1.0, 0.1, 12345678901234567890u64, "\u{7f}\t"], "e": {}});
        let once = canonical_json(&v);
        let parsed: Value = serde_json::from_str(&once).unwrap();
        assert_eq!(canonical_json(&parsed), once);
    }

    #[test]
    fn scalars() {
        assert_eq!(canonical_json(&json!(null)), "null");
        assert_eq!(canonical_json(&json!(false)), "false");
        assert_eq!(canonical_json(&json!([])), "[]");
        assert_eq!(canonical_json(&json!({})), "{}");
    }

    #[test]
    fn sha256_tagged_format() {
        // SHA-256 of the empty string is a well-known constant.
        assert_eq!(
            sha256_tagged(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let h = sha256_tagged(b"abc");
        assert_eq!(h.len(), HASH_PREFIX.len() + 64);
        assert!(
            h[HASH_PREFIX.len()..]
                .chars()
                .all(|c| matches!(c, '0'..='9' | 'a'..='f'))
        );
    }
}
