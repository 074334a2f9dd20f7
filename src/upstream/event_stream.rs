//! Server-Sent Events (`text/event-stream`) parsing, as both HTTP transports
//! receive server messages.
//!
//! Hand-written rather than taken from a crate because the firewall needs a
//! hard per-event size bound ([`MAX_SSE_EVENT_BYTES`]) that survives a
//! hostile or broken server: an oversized event is skipped (reported as
//! [`Item::Dropped`], with its first bytes, so the call it answers fails at
//! once) and the stream goes on, and the buffer never grows past
//! the bound. The grammar is the WHATWG one: `\n`, `\r\n` or `\r` end lines;
//! `:` starts a comment; `data` lines join with `\n`; `event`, `id` and
//! `retry` are honoured; a blank line dispatches.

use std::collections::VecDeque;
use std::time::Duration;

use super::connection::MAX_UPSTREAM_MESSAGE_BYTES;
use crate::budget::{Lease, OverBudget};
use crate::framing::{KEPT_PREFIX_BYTES, Pieces};

/// Largest event accepted (its data plus one line in progress). One event
/// carries one JSON-RPC message, so this is the message bound.
pub const MAX_SSE_EVENT_BYTES: usize = MAX_UPSTREAM_MESSAGE_BYTES;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `message` unless the server named another type.
    pub event: String,
    pub data: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Event(Event),
    /// A big event was dropped: over [`MAX_SSE_EVENT_BYTES`], more than
    /// the process's budget for big messages could cover, or not whole
    /// within the reader's deadline. `prefix` is the first bytes of its data, to find the
    /// request it answered.
    Dropped {
        why: String,
        prefix: Vec<u8>,
    },
}

/// Incremental parser: feed bytes as they arrive, take complete items out.
///
/// Memory: a long line is kept in pieces ([`Pieces`]) and joined once; a
/// `data` line's bytes become the event's data where they lie (its field
/// name cut off in place), so an event of one data line, the usual
/// message, is held once. The data was a second buffer, regrown by
/// doubling and again for the line break after it: a 24 MiB message cost
/// ~4x its size before it was parsed.
#[derive(Debug, Default)]
pub struct Parser {
    /// The line in progress.
    line: Pieces,
    /// The event's data lines so far, without their field name.
    data: Vec<Vec<u8>>,
    /// Their length joined with `\n`, plus one: the bound counts this.
    data_len: usize,
    event: Option<String>,
    /// The last `id:` seen, for `Last-Event-ID` on reconnection.
    pub last_id: Option<String>,
    /// The last `retry:` seen: how long to wait before reconnecting.
    pub retry: Option<Duration>,
    /// The previous chunk ended in `\r`; a leading `\n` belongs to it.
    after_cr: bool,
    /// The event's data lines on the budget for big messages (the line in
    /// progress holds a lease of its own).
    lease: Lease,
    /// When the event passed [`crate::budget::FREE_BYTES`].
    big_since: Option<tokio::time::Instant>,
    /// The rest of this event is being skipped.
    skipping: bool,
    /// Dispatched in its place when it ends.
    skipped: Option<Item>,
}

impl Parser {
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut VecDeque<Item>) {
        if self.after_cr && bytes.first() == Some(&b'\n') {
            bytes = &bytes[1..];
        }
        self.after_cr = false;
        while let Some(end) = bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.push_line_bytes(&bytes[..end]);
            let line = std::mem::take(&mut self.line).joined();
            self.line_done(line, out);
            let crlf = bytes[end] == b'\r' && bytes.get(end + 1) == Some(&b'\n');
            if bytes[end] == b'\r' && end + 1 == bytes.len() {
                self.after_cr = true;
            }
            bytes = &bytes[end + if crlf { 2 } else { 1 }..];
        }
        self.push_line_bytes(bytes);
    }

    fn push_line_bytes(&mut self, bytes: &[u8]) {
        if self.skipping {
            // Only whether the line is empty matters now.
            if self.line.is_empty() && !bytes.is_empty() {
                let _ = self.line.push(&bytes[..1]);
            }
            return;
        }
        if self.data_len + self.line.len() + bytes.len() > MAX_SSE_EVENT_BYTES {
            let prefix = self.prefix();
            self.skip(Some(Item::Dropped {
                why: format!("it is over the {MAX_SSE_EVENT_BYTES}-byte limit"),
                prefix,
            }));
            let _ = self.line.push(&bytes[..bytes.len().min(1)]);
        } else if let Err(over) = self.line.push(bytes) {
            self.skip_over_budget(over);
            let _ = self.line.push(&bytes[..bytes.len().min(1)]);
        } else if self.big_since.is_none()
            && self.line.len() + self.data_len > crate::budget::FREE_BYTES
        {
            self.big_since = Some(tokio::time::Instant::now());
        }
    }

    /// When the event in progress passed [`crate::budget::FREE_BYTES`],
    /// if it has.
    pub fn big_since(&self) -> Option<tokio::time::Instant> {
        self.big_since
    }

    /// Give up the event in progress: it took longer than `deadline` to
    /// arrive. Reported at once (the stream may stay silent), the rest of
    /// it skipped.
    pub fn give_up(&mut self, deadline: Duration, out: &mut VecDeque<Item>) {
        let prefix = self.prefix();
        let mid_line = !self.line.is_empty();
        self.skip(None);
        out.push_back(Item::Dropped {
            why: crate::budget::too_slow(deadline),
            prefix,
        });
        // Whether a line is in progress decides what the next line end
        // means: the end of that line, or the blank line that ends the
        // event.
        if mid_line {
            let _ = self.line.push(b":");
        }
    }

    /// Let go of the event so far; the rest of it is skipped, and `why`
    /// (if any) dispatched in its place.
    fn skip(&mut self, why: Option<Item>) {
        self.skipping = true;
        self.skipped = why;
        self.line = Pieces::default();
        self.data = Vec::new();
        self.data_len = 0;
        self.lease = Lease::default();
        self.big_since = None;
    }

    /// The first bytes of the event so far.
    fn prefix(&self) -> Vec<u8> {
        match self.data.first() {
            Some(data) => data[..data.len().min(KEPT_PREFIX_BYTES)].to_vec(),
            None => self.line.prefix(KEPT_PREFIX_BYTES),
        }
    }

    fn skip_over_budget(&mut self, over: OverBudget) {
        let prefix = self.prefix();
        self.skip(Some(Item::Dropped {
            why: over.to_string(),
            prefix,
        }));
    }

    fn line_done(&mut self, mut line: Vec<u8>, out: &mut VecDeque<Item>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if self.skipping || line[0] == b':' {
            return;
        }
        // `field: value`, one space after the colon dropped; no colon: the
        // whole line is the field, with an empty value.
        let (field_end, value_start) = match line.iter().position(|&b| b == b':') {
            Some(i) => (i, i + 1 + usize::from(line.get(i + 1) == Some(&b' '))),
            None => (line.len(), line.len()),
        };
        let text = |line: &[u8]| String::from_utf8_lossy(&line[value_start..]).into_owned();
        match &line[..field_end] {
            b"data" => {
                line.drain(..value_start);
                self.data_len += line.len() + 1;
                self.data.push(line);
                if let Err(over) = self.lease.cover(self.data_len) {
                    self.skip_over_budget(over);
                }
            }
            b"event" => self.event = Some(text(&line)),
            b"id" if !line[value_start..].contains(&0) => self.last_id = Some(text(&line)),
            b"retry" => {
                if let Ok(ms) = text(&line).parse::<u64>() {
                    self.retry = Some(Duration::from_millis(ms));
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut VecDeque<Item>) {
        let event = self.event.take();
        let lines = std::mem::take(&mut self.data);
        self.data_len = 0;
        self.lease = Lease::default();
        self.big_since = None;
        if std::mem::take(&mut self.skipping) {
            out.extend(self.skipped.take());
            return;
        }
        if lines.is_empty() {
            return;
        }
        let data = match lines.len() {
            1 => lines.into_iter().next().unwrap_or_default(),
            _ => {
                let mut joined = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
                for (i, line) in lines.into_iter().enumerate() {
                    if i > 0 {
                        joined.push(b'\n');
                    }
                    joined.extend_from_slice(&line);
                }
                joined
            }
        };
        let data = String::from_utf8(data)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        out.push_back(Item::Event(Event {
            event: event
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "message".into()),
            data,
        }));
    }
}

/// Events read from an HTTP response body as they arrive.
pub struct EventReader {
    response: reqwest::Response,
    pub parser: Parser,
    ready: VecDeque<Item>,
    /// How long a big event may take to arrive, from its first byte past
    /// [`crate::budget::FREE_BYTES`] (see `framing::LineReader::deadline`).
    deadline: Duration,
}

impl EventReader {
    pub fn new(response: reqwest::Response, deadline: Duration) -> EventReader {
        EventReader {
            response,
            parser: Parser::default(),
            ready: VecDeque::new(),
            deadline,
        }
    }

    /// The next item; `Ok(None)` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<Item>, reqwest::Error> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Ok(Some(item));
            }
            let read = self.response.chunk();
            let since = self.parser.big_since();
            let Some(chunk) = crate::budget::before_deadline(since, self.deadline, read).await
            else {
                self.parser.give_up(self.deadline, &mut self.ready);
                continue;
            };
            let chunk = chunk?;
            match chunk {
                Some(chunk) => self.parser.feed(&chunk, &mut self.ready),
                None => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&str]) -> (Vec<Item>, Parser) {
        let mut parser = Parser::default();
        let mut out = VecDeque::new();
        for c in chunks {
            parser.feed(c.as_bytes(), &mut out);
        }
        (out.into(), parser)
    }

    fn event(event: &str, data: &str) -> Item {
        Item::Event(Event {
            event: event.into(),
            data: data.into(),
        })
    }

    #[test]
    fn multi_line_data_comments_and_fields() {
        let (items, parser) = parse(&[
            ": keep-alive\n\nid: 7\nretry: 1500\ndata: {\"a\":\ndata:1}\n\n",
            "event: endpoint\ndata: /messages?session=1\n\n",
        ]);
        assert_eq!(
            items,
            vec![
                event("message", "{\"a\":\n1}"),
                event("endpoint", "/messages?session=1")
            ]
        );
        assert_eq!(parser.last_id.as_deref(), Some("7"));
        assert_eq!(parser.retry, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn any_line_ending_and_any_chunking() {
        let text = "data: one\r\n\r\ndata: two\r\rdata: three\n\n";
        let whole = parse(&[text]).0;
        assert_eq!(
            whole,
            vec![
                event("message", "one"),
                event("message", "two"),
                event("message", "three")
            ]
        );
        for split in 1..text.len() {
            let (a, b) = text.split_at(split);
            assert_eq!(parse(&[a, b]).0, whole, "split at {split}");
        }
    }

    #[test]
    fn an_event_without_data_is_not_dispatched() {
        assert_eq!(
            parse(&["event: ping\n\n", "data\n\n"]).0,
            vec![event("message", "")]
        );
    }

    /// A data line of several pieces, fed in uneven chunks, comes out whole;
    /// its text is held at its size (one line of data, the usual message).
    #[test]
    fn a_long_data_line_is_read_whole() {
        let long: String = (0..3 * 1024 * 1024 + 77)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let input = format!("event: message\r\ndata: {long}\r\n\r\ndata: x\ndata: y\n\n");
        let mut parser = Parser::default();
        let mut out = VecDeque::new();
        for chunk in input.as_bytes().chunks(7_001) {
            parser.feed(chunk, &mut out);
        }
        let Some(Item::Event(first)) = out.pop_front() else {
            panic!("an event");
        };
        assert!(first.data == long, "the long data, whole");
        // The line itself, its field name cut off in place.
        assert_eq!(first.data.capacity(), "data: ".len() + long.len());
        assert_eq!(Vec::from(out), vec![event("message", "x\ny")]);
    }

    #[test]
    fn an_oversized_event_is_skipped_and_the_stream_goes_on() {
        let mut parser = Parser::default();
        let mut out = VecDeque::new();
        let big = vec![b'x'; 1024 * 1024];
        parser.feed(b"data: ", &mut out);
        for _ in 0..(MAX_SSE_EVENT_BYTES / big.len() + 1) {
            parser.feed(&big, &mut out);
            assert!(parser.line.len() + parser.data_len <= MAX_SSE_EVENT_BYTES);
        }
        parser.feed(b"\n\ndata: ok\n\n", &mut out);
        let Some(Item::Dropped { why, prefix }) = out.pop_front() else {
            panic!("{out:?}");
        };
        assert!(why.contains("-byte limit"), "{why}");
        assert!(prefix.starts_with(b"data: xxx"));
        assert_eq!(Vec::from(out), vec![event("message", "ok")]);
    }

    const MIB: usize = 1024 * 1024;

    /// A parser whose big events count against a budget of its own.
    fn within_budget(limit: usize) -> (Parser, &'static crate::budget::Budget) {
        let budget = Box::leak(Box::new(crate::budget::Budget::new(limit)));
        let parser = Parser {
            line: Pieces::within(budget),
            lease: Lease::of(budget),
            ..Parser::default()
        };
        (parser, budget)
    }

    /// An event the budget for big messages cannot cover is skipped with
    /// the first bytes of its data kept (to fail the request it answers),
    /// what it held is given back, and the next event is read.
    #[test]
    fn an_event_the_budget_cannot_cover_is_skipped_and_the_stream_goes_on() {
        let (mut parser, budget) = within_budget(5 * MIB);
        let mut out = VecDeque::new();
        let head = br#"data: {"jsonrpc":"2.0","id":7,"result":"#;
        parser.feed(head, &mut out);
        for _ in 0..3 {
            parser.feed(&[b'x'; MIB], &mut out);
        }
        assert_eq!(budget.held(), 0, "skipped at once, its bytes let go");
        parser.feed(b"more\n\ndata: ok\n\n", &mut out);
        let out = Vec::from(out);
        let Item::Dropped { why, prefix } = &out[0] else {
            panic!("{out:?}");
        };
        assert!(why.contains("its limit is 5 MiB"), "{why}");
        assert!(prefix.starts_with(head), "{:?}", &prefix[..60]);
        assert_eq!(out[1], event("message", "ok"));
        assert_eq!(out.len(), 2);
    }

    /// A big event given up (its reader's deadline passed) is reported at
    /// once, lets go of what it held, and the rest of it is skipped when it
    /// comes: the next event is read as usual.
    #[test]
    fn a_big_event_given_up_is_reported_at_once_and_its_rest_skipped() {
        let (mut parser, budget) = within_budget(64 * MIB);
        let mut out = VecDeque::new();
        parser.feed(br#"data: {"jsonrpc":"2.0","id":9,"result":"#, &mut out);
        assert!(parser.big_since().is_none());
        parser.feed(&[b'x'; 2 * MIB], &mut out);
        assert!(parser.big_since().is_some());
        assert!(budget.held() > 0);
        parser.give_up(Duration::from_secs(7), &mut out);
        let Some(Item::Dropped { why, prefix }) = out.pop_front() else {
            panic!("{out:?}");
        };
        assert!(why.contains("within 7s"), "{why}");
        assert!(prefix.starts_with(br#"data: {"jsonrpc":"2.0","id":9"#));
        assert_eq!(budget.held(), 0);
        assert!(parser.big_since().is_none());
        parser.feed(b"xxxx\ndata: more of it\n\ndata: ok\n\n", &mut out);
        assert_eq!(Vec::from(out.split_off(0)), vec![event("message", "ok")]);

        // Given up between its last data line and the blank line that ends
        // it: that blank line ends it, and the next event is whole.
        parser.feed(b"data: ", &mut out);
        parser.feed(&[b'y'; 2 * MIB], &mut out);
        parser.feed(b"\n", &mut out);
        parser.give_up(Duration::from_secs(7), &mut out);
        assert!(matches!(out.pop_front(), Some(Item::Dropped { .. })));
        parser.feed(b"\ndata: next\n\n", &mut out);
        assert_eq!(Vec::from(out), vec![event("message", "next")]);
    }
}
