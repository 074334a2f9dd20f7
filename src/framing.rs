//! Newline-delimited message framing with a size cap, for stdio on both
//! sides.
//!
//! Hand-written because `tokio_util`'s `LinesCodec` ends the stream after
//! its first error (an over-long line or invalid UTF-8), and one bad message
//! must not end a session. Here an over-long line is skipped and reported as
//! [`Frame::TooLong`]; bytes are handed on undecoded, so invalid UTF-8 is
//! caught by the JSON parser as an ordinary parse error.

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// One line of input.
#[derive(Debug, PartialEq)]
pub enum Frame {
    Line(Vec<u8>),
    /// A line longer than the cap; its bytes were discarded.
    TooLong,
}

/// Reads [`Frame`]s from a byte stream.
pub struct LineReader<R> {
    inner: BufReader<R>,
    max: usize,
    /// The first bytes of the last over-long line (see [`Self::discarded_prefix`]).
    prefix: Vec<u8>,
}

/// How much of an over-long line is kept, so the reader's owner can tell
/// which request it answered (its id comes first in practice).
pub const KEPT_PREFIX_BYTES: usize = 4096;

/// How much one read takes from the pipe: a Linux pipe's default capacity.
/// With tokio's default 8 KiB, a 1 MB answer took 128 reads.
const READ_BUFFER_BYTES: usize = 64 * 1024;

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner: BufReader::with_capacity(READ_BUFFER_BYTES, inner),
            max,
            prefix: Vec::new(),
        }
    }

    /// The first [`KEPT_PREFIX_BYTES`] of the line last reported as
    /// [`Frame::TooLong`].
    pub fn discarded_prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The next line without its `\n` (and `\r`), or `None` at end of input.
    pub async fn next(&mut self) -> std::io::Result<Option<Frame>> {
        let mut line = Pieces::default();
        let mut too_long = false;
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                return Ok(match (too_long, line.is_empty()) {
                    (true, _) => Some(Frame::TooLong),
                    (false, true) => None,
                    (false, false) => Some(Frame::Line(line.joined())),
                });
            }
            let (chunk, consumed, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (&available[..i], i + 1, true),
                None => (available, available.len(), false),
            };
            if !too_long && line.len() + chunk.len() > self.max {
                too_long = true;
                line.push(&chunk[..chunk.len().min(KEPT_PREFIX_BYTES)]);
                self.prefix = line.prefix(KEPT_PREFIX_BYTES);
                line = Pieces::default();
            }
            if !too_long {
                line.push(chunk);
            }
            self.inner.consume(consumed);
            if done {
                if too_long {
                    return Ok(Some(Frame::TooLong));
                }
                let mut line = line.joined();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(Frame::Line(line)));
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
#[derive(Debug, Default)]
pub(crate) struct Pieces {
    full: Vec<Vec<u8>>,
    last: Vec<u8>,
    len: usize,
}

/// Size of a long line's pieces.
const PIECE_BYTES: usize = 1024 * 1024;

impl Pieces {
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if !self.last.is_empty() && self.last.len() + bytes.len() > PIECE_BYTES {
            let next = Vec::with_capacity(PIECE_BYTES.max(bytes.len()));
            self.full.push(std::mem::replace(&mut self.last, next));
        }
        self.last.extend_from_slice(bytes);
        self.len += bytes.len();
    }

    /// The first `n` bytes (or all, if fewer).
    fn prefix(&self, n: usize) -> Vec<u8> {
        let all = self.full.iter().chain(std::iter::once(&self.last));
        all.flatten().take(n).copied().collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn joined(self) -> Vec<u8> {
        if self.full.is_empty() {
            return self.last;
        }
        let mut line = Vec::with_capacity(self.len);
        for piece in self.full {
            line.extend_from_slice(&piece);
        }
        line.extend_from_slice(&self.last);
        line
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
                Frame::Line(b"ab".to_vec()),
                Frame::TooLong,
                Frame::Line(b"cd".to_vec()),
                Frame::Line(b"last".to_vec())
            ]
        );
    }

    #[tokio::test]
    async fn invalid_utf8_is_passed_on_not_fatal() {
        let got = frames(b"\xff\xfe\nok\n", 100).await;
        assert_eq!(
            got,
            [Frame::Line(vec![0xff, 0xfe]), Frame::Line(b"ok".to_vec())]
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
        assert!(got[0] == Frame::Line(long.clone()), "the long line, whole");
        assert_eq!(got[1], Frame::Line(b"short".to_vec()));
        assert_eq!(got[2], Frame::TooLong);
        assert_eq!(reader.discarded_prefix(), &long[..KEPT_PREFIX_BYTES]);
        assert_eq!(got[3], Frame::Line(b"end".to_vec()));
    }
}
