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
        let mut line = Vec::new();
        let mut too_long = false;
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                return Ok(match (too_long, line.is_empty()) {
                    (true, _) => Some(Frame::TooLong),
                    (false, true) => None,
                    (false, false) => Some(Frame::Line(line)),
                });
            }
            let (chunk, consumed, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (&available[..i], i + 1, true),
                None => (available, available.len(), false),
            };
            if !too_long && line.len() + chunk.len() > self.max {
                too_long = true;
                line.extend_from_slice(&chunk[..chunk.len().min(KEPT_PREFIX_BYTES)]);
                line.truncate(KEPT_PREFIX_BYTES);
                self.prefix = std::mem::take(&mut line);
            }
            if !too_long {
                line.extend_from_slice(chunk);
            }
            self.inner.consume(consumed);
            if done {
                if too_long {
                    return Ok(Some(Frame::TooLong));
                }
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(Frame::Line(line)));
            }
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
}
