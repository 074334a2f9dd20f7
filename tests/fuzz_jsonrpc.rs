//! Fuzz target: the JSON-RPC message path in-process.
//!
//! - `jsonrpc::parse_bytes` / `classify` on arbitrary bytes, on mutated
//!   corpus lines (`fuzz/corpus/jsonrpc/`) and on structured envelopes:
//!   never panics; the result is exactly what [`expect_line`] (an oracle
//!   written from JSON-RPC 2.0) says; every error's `to_response()` is a valid
//!   JSON-RPC error object with the right code and id; every classified
//!   message survives being re-encoded and parsed again.
//! - `framing::LineReader` on arbitrary byte streams, delivered in random
//!   chunk sizes, with random caps: the frames are exactly the input's lines
//!   (`\n`-split; a trailing `\r` stripped from terminated lines), with each
//!   line longer than the cap replaced by `TooLong`; so joining the lines
//!   with `\n` gives back the input when nothing was too long.

mod fuzz_support;

use std::pin::Pin;
use std::task::{Context, Poll};

use fuzz_support::*;
use mcp_firewall::framing::{Frame, LineReader};
use mcp_firewall::jsonrpc::{self, Message, MessageError, code};
use proptest::prelude::*;
use serde_json::Value;
use tokio::io::{AsyncRead, ReadBuf};

/// The whole invariant for one line.
fn check_line(line: &[u8]) {
    let expect = expect_line(line);
    let got = jsonrpc::parse_bytes(line);
    // `parse` (the &str entry point) must agree with `parse_bytes`.
    if let Ok(text) = std::str::from_utf8(line) {
        assert_eq!(jsonrpc::parse(text), got, "parse vs parse_bytes");
    }
    match (&expect, &got) {
        // handle_bytes skips blank lines before parsing; on its own a blank
        // line is a parse error.
        (Expect::Blank, Err(MessageError::Parse(_))) => {}
        (Expect::Parse, Err(MessageError::Parse(_))) => {}
        (Expect::Invalid(id), Err(e @ MessageError::Invalid { id: got_id, .. })) => {
            assert_eq!(id, got_id, "error id");
            let _ = e;
        }
        (
            Expect::Request { id, method, params },
            Ok(Message::Request {
                id: i,
                method: m,
                params: p,
            }),
        ) => assert_eq!((id, method, params), (i, m, p)),
        (
            Expect::Notification { method, params },
            Ok(Message::Notification {
                method: m,
                params: p,
            }),
        ) => assert_eq!((method, params), (m, p)),
        (Expect::Response { id, body }, Ok(Message::Response { id: i, body: b })) => {
            assert_eq!((id, body), (i, b))
        }
        _ => panic!(
            "line {:?}: expected {expect:?}, got {got:?}",
            String::from_utf8_lossy(line)
        ),
    }
    match got {
        Err(e) => {
            let response = e.to_response();
            let code = assert_error_response(&response);
            match e {
                MessageError::Parse(_) => {
                    assert_eq!(code, code::PARSE_ERROR);
                    assert!(response["id"].is_null());
                }
                MessageError::Invalid { id, .. } => {
                    assert_eq!(code, code::INVALID_REQUEST);
                    assert_eq!(response["id"], id);
                }
            }
            // The answer itself is one line of JSON (stdout framing).
            let text = response.to_string();
            assert!(!text.contains('\n'), "{text}");
        }
        Ok(message) => {
            // Re-encoding a classified message and parsing it again gives it back.
            let encoded = match &message {
                Message::Request { id, method, params } => jsonrpc::request(id, method, params),
                Message::Notification { method, params } => jsonrpc::notification(method, params),
                Message::Response { id, body } => jsonrpc::response_message(id, body.clone()),
            };
            let again = jsonrpc::parse(&encoded.to_string()).expect("re-encoded message parses");
            assert_eq!(again, message, "round trip of {encoded}");
        }
    }
}

#[test]
fn jsonrpc_corpus_replays() {
    for (name, bytes) in corpus("jsonrpc") {
        for line in bytes.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let result = std::panic::catch_unwind(|| check_line(line));
            assert!(result.is_ok(), "corpus entry {name}");
        }
    }
}

fn corpus_lines() -> Vec<Vec<u8>> {
    corpus_bytes("jsonrpc")
        .into_iter()
        .flat_map(|b| {
            b.split(|c| *c == b'\n')
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>()
        })
        .filter(|l| !l.is_empty())
        .collect()
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn jsonrpc_arbitrary_bytes(line in proptest::collection::vec(any::<u8>(), 0..256)) {
        check_line(&line);
    }

    #[test]
    fn jsonrpc_mutated_corpus(line in mutated(corpus_lines(), 6)) {
        check_line(&line);
    }

    #[test]
    fn jsonrpc_structured_envelopes(
        v in envelope(),
        edits in proptest::collection::vec(mutation(), 0..3),
    ) {
        let bytes = serde_json::to_vec(&v).unwrap();
        check_line(&bytes);
        check_line(&apply(bytes, &edits));
        // classify on the value directly agrees with parsing its text.
        let direct = jsonrpc::classify(v.clone());
        prop_assert_eq!(direct, jsonrpc::parse(&v.to_string()));
    }

    #[test]
    fn jsonrpc_any_json_value(v in json_value()) {
        check_line(v.to_string().as_bytes());
    }
}

// ---- framing ----

/// An `AsyncRead` that hands out its bytes in the given chunk sizes, so line
/// boundaries fall at every place relative to buffer refills.
struct Chunked {
    data: Vec<u8>,
    pos: usize,
    sizes: Vec<usize>,
    turn: usize,
}

impl AsyncRead for Chunked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let want = this.sizes[this.turn % this.sizes.len()].max(1);
        this.turn += 1;
        let n = want.min(this.data.len() - this.pos).min(buf.remaining());
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

fn read_frames(input: &[u8], max: usize, sizes: Vec<usize>) -> Vec<Frame> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let reader = Chunked {
            data: input.to_vec(),
            pos: 0,
            sizes,
            turn: 0,
        };
        let mut lines = LineReader::new(reader, max);
        let mut out = Vec::new();
        while let Some(frame) = lines.next().await.unwrap() {
            out.push(frame);
        }
        out
    })
}

/// The frames the documented behaviour gives: split at `\n`; a terminated
/// line loses one trailing `\r`; a line (counted with its `\r`, without
/// its `\n`) longer than `max` is `TooLong`; a final unterminated line is
/// passed on as it is (its `\r` kept), and nothing is yielded for an empty
/// tail.
fn model_frames(input: &[u8], max: usize) -> Vec<Frame> {
    let mut out = Vec::new();
    let mut parts: Vec<&[u8]> = input.split(|b| *b == b'\n').collect();
    let tail = parts.pop().unwrap_or_default();
    for line in parts {
        if line.len() > max {
            out.push(Frame::TooLong);
        } else {
            out.push(Frame::Line(
                line.strip_suffix(b"\r").unwrap_or(line).to_vec().into(),
            ));
        }
    }
    if !tail.is_empty() {
        out.push(if tail.len() > max {
            Frame::TooLong
        } else {
            Frame::Line(tail.to_vec().into())
        });
    }
    out
}

fn check_framing(input: &[u8], max: usize, sizes: Vec<usize>) {
    let frames = read_frames(input, max, sizes);
    assert_eq!(
        frames,
        model_frames(input, max),
        "input {input:?} max {max}"
    );
    if !frames.contains(&Frame::TooLong) {
        // Nothing dropped: the lines joined with `\n` are the input, up to
        // the `\r`s stripped before each `\n` and the final `\n`.
        let joined: Vec<u8> = frames
            .iter()
            .map(|f| match f {
                Frame::Line(l) => l.to_vec(),
                _ => unreachable!(),
            })
            .collect::<Vec<_>>()
            .join(&b'\n');
        let mut segments: Vec<&[u8]> = input.split(|b| *b == b'\n').collect();
        let tail = segments.pop().unwrap_or_default();
        let mut segments: Vec<&[u8]> = segments
            .into_iter()
            .map(|s| s.strip_suffix(b"\r").unwrap_or(s))
            .collect();
        if !tail.is_empty() {
            segments.push(tail);
        }
        let normalised = segments.join(&b'\n');
        assert_eq!(joined, normalised);
    }
    for f in &frames {
        if let Frame::Line(l) = f {
            assert!(l.len() <= max && !l.contains(&b'\n'));
        }
    }
}

fn stream_bytes() -> impl Strategy<Value = Vec<u8>> {
    // Mostly line-structured streams (short and long lines, CRLF, blank
    // lines), some pure noise, some mutated corpus files.
    let piece = prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..40),
        2 => "[a-z{}\":,]{0,30}".prop_map(String::into_bytes),
        2 => Just(b"\n".to_vec()),
        1 => Just(b"\r\n".to_vec()),
        1 => Just(b"\r".to_vec()),
        1 => (0usize..300).prop_map(|n| vec![b'x'; n]),
    ];
    prop_oneof![
        4 => proptest::collection::vec(piece, 0..16).prop_map(|p| p.concat()),
        1 => mutated(corpus_bytes("framing"), 8),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn framing_random_streams(
        input in stream_bytes(),
        max in prop_oneof![0usize..8, 8usize..64, 64usize..400],
        sizes in proptest::collection::vec(1usize..50, 1..6),
    ) {
        check_framing(&input, max, sizes);
    }
}

#[test]
fn framing_corpus_replays() {
    for (name, bytes) in corpus("framing") {
        for max in [0, 1, 2, 3, 7, 16, 100, 1 << 20] {
            for sizes in [vec![1], vec![3, 1, 7], vec![8192]] {
                let r = std::panic::catch_unwind(|| check_framing(&bytes, max, sizes));
                assert!(r.is_ok(), "corpus entry {name}, max {max}");
            }
        }
    }
}

#[test]
fn error_responses_of_known_lines() {
    // A few fixed expectations so the oracle itself is checked.
    assert_eq!(expect_line(b"{"), Expect::Parse);
    assert_eq!(expect_line(b" \t"), Expect::Blank);
    assert_eq!(expect_line(b"[]"), Expect::Invalid(Value::Null));
    assert_eq!(
        expect_line(br#"{"jsonrpc":"1.0","id":9,"method":"x"}"#),
        Expect::Invalid(9.into())
    );
}
