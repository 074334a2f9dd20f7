//! Newline-delimited message framing with a size cap, for stdio on both
//! sides.
//!
//! Hand-written because `tokio_util`'s `LinesCodec` ends the stream after
//! its first error (an over-long line or invalid UTF-8), and one bad message
//! must not end a session. Here an over-long line is skipped and reported as
//! [`Frame::TooLong`], and one the process has no memory left for as
//! [`Frame::OverBudget`] ([`crate::budget`]); bytes are handed on
//! undecoded, so invalid UTF-8 is caught by the JSON parser as an ordinary
//! parse error.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::budget::{Budget, Lease, OverBudget, before_deadline};

/// One line of input.
#[derive(Debug, PartialEq)]
pub enum Frame {
    Line(Line),
    /// A line longer than the cap; its bytes were discarded.
    TooLong,
    /// A big line the process's budget for big messages could not cover;
    /// its bytes were discarded.
    OverBudget(OverBudget),
    /// A big line that did not arrive whole within the reader's deadline
    /// (see [`LineReader::deadline`]); its bytes so far were discarded, and
    /// the rest of it will be.
    TooSlow(Duration),
}

impl Frame {
    /// Why a line was dropped, for [`Frame::OverBudget`] and
    /// [`Frame::TooSlow`]: the words the client is given.
    pub fn dropped_because(&self) -> Option<String> {
        match self {
            Frame::OverBudget(over) => Some(over.to_string()),
            Frame::TooSlow(deadline) => Some(crate::budget::too_slow(*deadline)),
            Frame::Line(_) | Frame::TooLong => None,
        }
    }
}

/// A line's bytes, holding their share of the budget for big messages
/// until dropped: keep it while the message parsed from it is made.
#[derive(Debug)]
pub struct Line {
    bytes: Vec<u8>,
    _lease: Option<Lease>,
}

impl Line {
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

impl AsRef<[u8]> for Line {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl std::ops::Deref for Line {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// A line that holds nothing of the budget (tests, models).
impl From<Vec<u8>> for Line {
    fn from(bytes: Vec<u8>) -> Line {
        Line {
            bytes,
            _lease: None,
        }
    }
}

impl PartialEq for Line {
    fn eq(&self, other: &Line) -> bool {
        self.bytes == other.bytes
    }
}

/// Reads [`Frame`]s from a byte stream.
pub struct LineReader<R> {
    inner: BufReader<R>,
    max: usize,
    budget: &'static Budget,
    /// How long a big line may take to arrive, from its first byte past
    /// [`crate::budget::FREE_BYTES`].
    deadline: Duration,
    /// The line in progress was given up on ([`Frame::TooSlow`]): what is
    /// left of it is skipped before the next line.
    skip_rest: bool,
    /// The first bytes of the last skipped line (see [`Self::discarded_prefix`]).
    prefix: Vec<u8>,
}

/// Default of [`LineReader::deadline`]: the default deadline of a
/// forwarded request.
pub const BIG_LINE_DEADLINE: Duration = crate::config::DEFAULT_UPSTREAM_TIMEOUT;

/// How much of an over-long line is kept, so the reader's owner can tell
/// which request it answered (its id comes first in practice).
pub const KEPT_PREFIX_BYTES: usize = 4096;

/// How much one read takes from the pipe: a Linux pipe's default capacity.
/// With tokio's default 8 KiB, a 1 MB answer took 128 reads.
const READ_BUFFER_BYTES: usize = 64 * 1024;

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// Lines of at most `max` bytes, big ones counted in the process's
    /// budget.
    pub fn new(inner: R, max: usize) -> Self {
        Self::within(inner, max, crate::budget::big_messages())
    }

    /// Lines of at most `max` bytes, big ones counted in `budget`.
    pub fn within(inner: R, max: usize, budget: &'static Budget) -> Self {
        LineReader {
            inner: BufReader::with_capacity(READ_BUFFER_BYTES, inner),
            max,
            budget,
            deadline: BIG_LINE_DEADLINE,
            skip_rest: false,
            prefix: Vec::new(),
        }
    }

    /// A big line must arrive whole within `deadline` of passing
    /// [`crate::budget::FREE_BYTES`], or it is given up and what it holds of
    /// the budget given back: a server that sends part of a big message
    /// and stops cannot keep that memory. (An upstream's reader takes the
    /// upstream's request deadline: an answer later than that is no use.)
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The first [`KEPT_PREFIX_BYTES`] of the line last reported as
    /// [`Frame::TooLong`], [`Frame::OverBudget`] or [`Frame::TooSlow`].
    pub fn discarded_prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The next line without its `\n` (and `\r`), or `None` at end of input.
    pub async fn next(&mut self) -> std::io::Result<Option<Frame>> {
        if self.skip_rest && !self.skip_line().await? {
            return Ok(None);
        }
        let mut line = Pieces::within(self.budget);
        let mut skipped: Option<Frame> = None;
        loop {
            // A skipped line's bytes are not kept: it has no deadline.
            let read = self.inner.fill_buf();
            let Some(read) = before_deadline(line.big_since(), self.deadline, read).await else {
                self.prefix = line.prefix(KEPT_PREFIX_BYTES);
                self.skip_rest = true;
                return Ok(Some(Frame::TooSlow(self.deadline)));
            };
            let available = read?;
            if available.is_empty() {
                return Ok(match (skipped, line.is_empty()) {
                    (Some(skipped), _) => Some(skipped),
                    (None, true) => None,
                    (None, false) => Some(Frame::Line(line.into_line())),
                });
            }
            let (chunk, consumed, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (&available[..i], i + 1, true),
                None => (available, available.len(), false),
            };
            if skipped.is_none() {
                let refused = if line.len() + chunk.len() > self.max {
                    Some(Frame::TooLong)
                } else {
                    line.push(chunk).err().map(Frame::OverBudget)
                };
                if let Some(refused) = refused {
                    // Its bytes go, and with them its lease.
                    self.prefix = line.prefix(KEPT_PREFIX_BYTES);
                    let wanted = KEPT_PREFIX_BYTES - self.prefix.len();
                    self.prefix
                        .extend_from_slice(&chunk[..chunk.len().min(wanted)]);
                    line = Pieces::within(self.budget);
                    skipped = Some(refused);
                }
            }
            self.inner.consume(consumed);
            if done {
                if let Some(skipped) = skipped {
                    return Ok(Some(skipped));
                }
                let mut line = line.into_line();
                if line.bytes.last() == Some(&b'\r') {
                    line.bytes.pop();
                }
                return Ok(Some(Frame::Line(line)));
            }
        }
    }

    /// Skip to the end of the line in progress: `false` at end of input.
    async fn skip_line(&mut self) -> std::io::Result<bool> {
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                return Ok(false);
            }
            let end = available.iter().position(|&b| b == b'\n');
            let consumed = end.map_or(available.len(), |i| i + 1);
            self.inner.consume(consumed);
            if end.is_some() {
                self.skip_rest = false;
                return Ok(true);
            }
        }
    }
}

/// A line's bytes as they arrive. A long line is kept in pieces of
/// [`PIECE_BYTES`] and joined once into a buffer of its exact size, each
/// piece let go as it is copied: at most its length plus a piece live at
/// once (the allocator may keep freed pieces resident for a moment).
/// One buffer regrown by doubling held up to twice the line's length, and
/// up to three times it while being copied to its next size, before the
/// message was even parsed.
///
/// Past [`crate::budget::FREE_BYTES`] the line holds a lease on the budget
/// for big messages, for twice its length; [`Self::push`] refuses bytes the
/// budget cannot cover.
#[derive(Debug)]
pub(crate) struct Pieces {
    full: Vec<Vec<u8>>,
    last: Vec<u8>,
    len: usize,
    lease: Lease,
    /// When the line passed [`crate::budget::FREE_BYTES`]: its deadline
    /// counts from then.
    big_since: Option<tokio::time::Instant>,
}

impl Default for Pieces {
    fn default() -> Pieces {
        Pieces::within(crate::budget::big_messages())
    }
}

/// Size of a long line's pieces.
const PIECE_BYTES: usize = 1024 * 1024;

impl Pieces {
    pub(crate) fn within(budget: &'static Budget) -> Pieces {
        Pieces::held_by(Lease::of(budget))
    }

    fn held_by(lease: Lease) -> Pieces {
        Pieces {
            full: Vec::new(),
            last: Vec::new(),
            len: 0,
            lease,
            big_since: None,
        }
    }

    /// Pieces whose every byte counts in `budget` ([`Lease::every_byte`]),
    /// charged to `holder`'s share when given.
    pub(crate) fn counting_every_byte(
        budget: &'static Budget,
        holder: Option<std::sync::Arc<crate::budget::Holder>>,
    ) -> Pieces {
        let lease = Lease::every_byte(budget);
        Pieces::held_by(match holder {
            Some(holder) => lease.charged_to(holder),
            None => lease,
        })
    }

    /// Append `bytes`, unless the budget cannot cover the longer line: then
    /// nothing is appended.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<(), OverBudget> {
        self.lease.cover(self.len + bytes.len())?;
        if !self.last.is_empty() && self.last.len() + bytes.len() > PIECE_BYTES {
            let next = Vec::with_capacity(PIECE_BYTES.max(bytes.len()));
            self.full.push(std::mem::replace(&mut self.last, next));
        }
        self.last.extend_from_slice(bytes);
        self.len += bytes.len();
        if self.big_since.is_none() && self.len > crate::budget::FREE_BYTES {
            self.big_since = Some(tokio::time::Instant::now());
        }
        Ok(())
    }

    /// When the line passed [`crate::budget::FREE_BYTES`], if it has.
    pub(crate) fn big_since(&self) -> Option<tokio::time::Instant> {
        self.big_since
    }

    /// The first `n` bytes (or all, if fewer).
    pub(crate) fn prefix(&self, n: usize) -> Vec<u8> {
        let all = self.full.iter().chain(std::iter::once(&self.last));
        all.flatten().take(n).copied().collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes in one buffer; the lease is given back.
    pub(crate) fn joined(self) -> Vec<u8> {
        self.into_line().bytes
    }

    /// The bytes in one buffer, still holding the lease.
    pub(crate) fn into_line(self) -> Line {
        let Pieces {
            full,
            last,
            len,
            lease,
            ..
        } = self;
        let bytes = if full.is_empty() {
            last
        } else {
            let mut line = Vec::with_capacity(len);
            for piece in full {
                line.extend_from_slice(&piece);
            }
            line.extend_from_slice(&last);
            line
        };
        Line {
            bytes,
            _lease: Some(lease),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(input: &[u8], max: usize) -> Vec<Frame> {
        let mut reader = LineReader::new(input, max);
        let mut out = Vec::new();
        while let Some(frame) = reader.next().await.unwrap() {
            out.push(frame);
        }
        out
    }

    #[tokio::test]
    async fn splits_lines_and_skips_only_the_long_one() {
        let got = frames(b"ab\r\nxxxxxxxx\ncd\nlast", 4).await;
        assert_eq!(
            got,
            [
                Frame::Line(b"ab".to_vec().into()),
                Frame::TooLong,
                Frame::Line(b"cd".to_vec().into()),
                Frame::Line(b"last".to_vec().into())
            ]
        );
    }

    #[tokio::test]
    async fn invalid_utf8_is_passed_on_not_fatal() {
        let got = frames(b"\xff\xfe\nok\n", 100).await;
        assert_eq!(
            got,
            [
                Frame::Line(vec![0xff, 0xfe].into()),
                Frame::Line(b"ok".to_vec().into())
            ]
        );
    }

    /// Hands over at most 7,001 bytes per read.
    struct Trickle<'a>(&'a [u8]);

    impl tokio::io::AsyncRead for Trickle<'_> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let n = self.0.len().min(7_001).min(buf.remaining());
            buf.put_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// Lines longer than a piece come out whole and in order, whatever
    /// sizes the reads hand over (here 7,001 bytes at a time), and the kept
    /// prefix of an over-long one is its first bytes.
    #[tokio::test]
    async fn long_lines_are_joined_from_their_pieces() {
        let long: Vec<u8> = (0..3 * PIECE_BYTES + 12_345)
            .map(|i| b'a' + (i % 26) as u8)
            .collect();
        let mut input = long.clone();
        input.extend_from_slice(b"\r\nshort\n");
        input.extend_from_slice(&long);
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\nend");
        let mut reader = LineReader::new(Trickle(&input), 2 * long.len() - 1);
        let mut got = Vec::new();
        while let Some(frame) = reader.next().await.unwrap() {
            got.push(frame);
        }
        assert_eq!(got.len(), 4);
        assert!(
            got[0] == Frame::Line(long.clone().into()),
            "the long line, whole"
        );
        assert_eq!(got[1], Frame::Line(b"short".to_vec().into()));
        assert_eq!(got[2], Frame::TooLong);
        assert_eq!(reader.discarded_prefix(), &long[..KEPT_PREFIX_BYTES]);
        assert_eq!(got[3], Frame::Line(b"end".to_vec().into()));
    }

    /// A big line the budget cannot cover is skipped and reported as
    /// [`Frame::OverBudget`] with its first bytes kept, what it held is
    /// given back at once, and the reader goes on. A line read whole holds
    /// its lease until it is dropped.
    #[tokio::test]
    async fn a_line_the_budget_cannot_cover_is_skipped_and_the_reader_goes_on() {
        let budget: &'static Budget = Box::leak(Box::new(Budget::new(6 * PIECE_BYTES)));
        let big: Vec<u8> = (0..4 * PIECE_BYTES)
            .map(|i| b'a' + (i % 26) as u8)
            .collect();
        let fits = &big[..2 * PIECE_BYTES];
        let mut input = Vec::new();
        for line in [&big[..], fits, b"small"] {
            input.extend_from_slice(line);
            input.push(b'\n');
        }
        let mut reader = LineReader::within(Trickle(&input), usize::MAX, budget);
        let Some(Frame::OverBudget(over)) = reader.next().await.unwrap() else {
            panic!("the 4 MiB line needs 8 MiB of a 6 MiB budget");
        };
        assert_eq!(over.limit, 6 * PIECE_BYTES);
        assert_eq!(reader.discarded_prefix(), &big[..KEPT_PREFIX_BYTES]);
        assert_eq!(budget.held(), 0, "a skipped line holds nothing");
        let Some(Frame::Line(line)) = reader.next().await.unwrap() else {
            panic!("the 2 MiB line fits");
        };
        assert_eq!(&line[..], fits);
        assert_eq!(
            budget.held(),
            4 * PIECE_BYTES,
            "held until the line is dropped"
        );
        drop(line);
        assert_eq!(budget.held(), 0);
        assert_eq!(
            reader.next().await.unwrap(),
            Some(Frame::Line(b"small".to_vec().into()))
        );
        assert_eq!(reader.next().await.unwrap(), None);
    }

    /// A big line that stops arriving is given up at the reader's deadline:
    /// reported at once as [`Frame::TooSlow`] with its first bytes kept and
    /// its share of the budget given back, and when the rest of it comes it
    /// is skipped, not read as a line of its own.
    #[tokio::test]
    async fn a_big_line_that_stops_arriving_is_given_up_at_the_deadline() {
        use tokio::io::AsyncWriteExt;
        let budget: &'static Budget = Box::leak(Box::new(Budget::new(64 * PIECE_BYTES)));
        let (mut server, client) = tokio::io::duplex(64 * 1024);
        let head = vec![b'h'; 2 * PIECE_BYTES];
        let (go_on_tx, go_on) = tokio::sync::oneshot::channel::<()>();
        let sender = tokio::spawn(async move {
            server.write_all(&head).await.unwrap();
            let _ = go_on.await;
            server.write_all(b"tail\nnext\n").await.unwrap();
            server
        });
        let deadline = Duration::from_millis(300);
        let mut reader = LineReader::within(client, usize::MAX, budget).deadline(deadline);
        assert_eq!(reader.next().await.unwrap(), Some(Frame::TooSlow(deadline)));
        assert_eq!(reader.discarded_prefix(), &[b'h'; KEPT_PREFIX_BYTES][..]);
        assert_eq!(budget.held(), 0);
        go_on_tx.send(()).unwrap();
        let next = reader.next().await.unwrap();
        assert_eq!(next, Some(Frame::Line(b"next".to_vec().into())));
        drop(sender.await.unwrap());
        assert_eq!(reader.next().await.unwrap(), None);
    }
}
