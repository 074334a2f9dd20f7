//! What the proxy sends its client: a JSON-RPC message, or a list answer
//! written item by item from the catalogue.
//!
//! Job: keep a big listing from being held twice more on its way out. A
//! `tools/list` answer built as a `Value` copied every definition the
//! catalogue already holds, and its serialization grew by doubling beside
//! that copy: a 20 MB listing peaked at ~70 MB of live heap (catalogue +
//! answer + text). A [`ListAnswer`] copies one definition at a time while
//! it is serialized, and [`Chunks`] takes the text in pieces, never one
//! buffer regrown by doubling.
//!
//! Invariant: what a client receives is byte for byte what serializing the
//! equivalent `Value` gives ([`ToClient::into_value`] is that `Value`).

use std::io::Write;
use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

/// One message for the client.
pub enum ToClient {
    Message(Value),
    List(ListAnswer),
}

/// The items of a list answer, read one at a time.
pub trait Listed: Send + Sync {
    fn count(&self) -> usize;
    /// The `i`th item as the client sees it (`i < count()`).
    fn item(&self, i: usize) -> Value;
}

/// The items a list answer shows: keys into a catalogue (kept alive by its
/// `Arc`), each turned into the client's item only when it is written.
pub struct Shown<C, K> {
    catalogue: Arc<C>,
    keys: Vec<K>,
    item: fn(&C, &K) -> Value,
}

impl<C, K> Shown<C, K> {
    pub fn new(catalogue: Arc<C>, keys: Vec<K>, item: fn(&C, &K) -> Value) -> Shown<C, K> {
        Shown {
            catalogue,
            keys,
            item,
        }
    }
}

impl<C: Send + Sync, K: Send + Sync> Listed for Shown<C, K> {
    fn count(&self) -> usize {
        self.keys.len()
    }

    fn item(&self, i: usize) -> Value {
        (self.item)(&self.catalogue, &self.keys[i])
    }
}

/// A response whose result is `{key: [items...]}`.
pub struct ListAnswer {
    id: Value,
    key: &'static str,
    items: Box<dyn Listed>,
}

impl ListAnswer {
    pub fn new(id: Value, key: &'static str, items: Box<dyn Listed>) -> ListAnswer {
        ListAnswer { id, key, items }
    }
}

impl From<Value> for ToClient {
    fn from(message: Value) -> ToClient {
        ToClient::Message(message)
    }
}

impl ToClient {
    /// The request's or response's id.
    pub fn id(&self) -> Option<&Value> {
        match self {
            ToClient::Message(m) => m.get("id"),
            ToClient::List(list) => Some(&list.id),
        }
    }

    /// The method of a request or notification; `None` for a response.
    pub fn method(&self) -> Option<&Value> {
        match self {
            ToClient::Message(m) => m.get("method"),
            ToClient::List(_) => None,
        }
    }

    /// The message itself, when it is not a list answer.
    pub fn as_message(&self) -> Option<&Value> {
        match self {
            ToClient::Message(m) => Some(m),
            ToClient::List(_) => None,
        }
    }

    /// The whole message as one `Value` (a list answer's items copied).
    pub fn into_value(self) -> Value {
        match self {
            ToClient::Message(m) => m,
            ToClient::List(list) => serde_json::to_value(&list).expect("a list answer serializes"),
        }
    }

    /// The message's JSON text in [`Chunks`].
    pub fn to_chunks(&self) -> Chunks {
        let mut chunks = Chunks::default();
        serde_json::to_writer(&mut chunks, self).expect("writing to memory does not fail");
        chunks
    }
}

impl std::fmt::Display for ToClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ToClient::Message(m) => m.fmt(f),
            ToClient::List(list) => write!(
                f,
                "{{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{{\"{}\":[{} items]}}}}",
                list.id,
                list.key,
                list.items.count()
            ),
        }
    }
}

impl Serialize for ToClient {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ToClient::Message(m) => m.serialize(serializer),
            ToClient::List(list) => list.serialize(serializer),
        }
    }
}

impl Serialize for ListAnswer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Result<'a>(&'a ListAnswer);
        struct Items<'a>(&'a dyn Listed);
        impl Serialize for Result<'_> {
            fn serialize<S: Serializer>(
                &self,
                serializer: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry(self.0.key, &Items(self.0.items.as_ref()))?;
                map.end()
            }
        }
        impl Serialize for Items<'_> {
            fn serialize<S: Serializer>(
                &self,
                serializer: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                let mut seq = serializer.serialize_seq(Some(self.0.count()))?;
                for i in 0..self.0.count() {
                    // One copy at a time, dropped once written.
                    seq.serialize_element(&self.0.item(i))?;
                }
                seq.end()
            }
        }
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("jsonrpc", "2.0")?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("result", &Result(self))?;
        map.end()
    }
}

/// Pieces of a message's text are at most this long, unless one write was
/// longer. Small enough not to hold much beyond the text, large enough that
/// a pipe or socket takes a piece per write.
const CHUNK_BYTES: usize = 256 * 1024;

/// Text written in pieces: a small message is one piece, a big one never a
/// buffer regrown (and copied) by doubling.
#[derive(Default)]
pub struct Chunks(Vec<Vec<u8>>);

impl Chunks {
    /// The pieces, in order.
    pub fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        self.0.iter().map(Vec::as_slice)
    }

    pub fn into_pieces(self) -> Vec<Vec<u8>> {
        self.0
    }

    pub fn len(&self) -> usize {
        self.0.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn push_bytes(&mut self, bytes: &[u8]) {
        let _ = self.write_all(bytes);
    }
}

impl Write for Chunks {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self.0.last_mut() {
            Some(last) if last.len() + data.len() <= CHUNK_BYTES || last.is_empty() => {
                last.extend_from_slice(data);
            }
            _ => {
                let mut piece = Vec::with_capacity(match self.0.is_empty() {
                    // The first piece starts small: most messages are.
                    true => data.len().max(256),
                    false => data.len().max(CHUNK_BYTES),
                });
                piece.extend_from_slice(data);
                self.0.push(piece);
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Defs(Vec<Value>);

    impl Listed for Defs {
        fn count(&self) -> usize {
            self.0.len()
        }
        fn item(&self, i: usize) -> Value {
            self.0[i].clone()
        }
    }

    fn joined(chunks: &Chunks) -> String {
        String::from_utf8(chunks.pieces().flatten().copied().collect()).unwrap()
    }

    #[test]
    fn a_list_answer_is_written_as_its_value_would_be() {
        let defs = vec![
            json!({"name": "a", "description": "x\"y\n".repeat(100_000)}),
            json!({"name": "b", "inputSchema": {"type": "object"}}),
        ];
        let expected = json!({"jsonrpc": "2.0", "id": 7, "result": {"tools": defs.clone()}});
        let answer = ToClient::List(ListAnswer::new(json!(7), "tools", Box::new(Defs(defs))));
        let chunks = answer.to_chunks();
        assert!(
            chunks.pieces().count() > 1,
            "a 500 KB answer is written in pieces"
        );
        assert!(chunks.pieces().all(|p| p.len() <= CHUNK_BYTES));
        assert_eq!(joined(&chunks), expected.to_string());
        assert_eq!(answer.into_value(), expected);
        let empty = ToClient::List(ListAnswer::new(
            json!("x"),
            "prompts",
            Box::new(Defs(vec![])),
        ));
        assert_eq!(empty.id(), Some(&json!("x")));
        assert_eq!(empty.method(), None);
        assert_eq!(
            joined(&empty.to_chunks()),
            r#"{"jsonrpc":"2.0","id":"x","result":{"prompts":[]}}"#
        );
    }

    #[test]
    fn a_small_message_is_one_piece() {
        let message = ToClient::from(json!({"jsonrpc": "2.0", "method": "notifications/x"}));
        let chunks = message.to_chunks();
        assert_eq!(chunks.pieces().count(), 1);
        assert_eq!(joined(&chunks), message.as_message().unwrap().to_string());
        assert_eq!(message.method(), Some(&json!("notifications/x")));
    }
}
