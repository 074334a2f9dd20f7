//! Serve one MCP session over stdin/stdout, newline-delimited JSON-RPC.
//!
//! Invariant: stdout carries only MCP messages, written by one task, one
//! whole line at a time; logs go to stderr.
//!
//! Where stdin and stdout are pipes (how every MCP client starts a stdio
//! server), they are read and written as non-blocking pipes on the runtime's
//! own reactor. `tokio::io::stdin()`/`stdout()` instead hand every read and
//! write to a blocking-pool thread: two extra thread wake-ups per call. A
//! stdout that shares its pipe with stderr (`2>&1`) keeps the blocking
//! writer, since non-blocking mode belongs to the pipe and would reach the
//! log writer and every child that inherits stderr.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::framing::{Frame, LineReader};
use crate::proxy::to_client::Chunks;
use crate::proxy::{Proxy, ToClient};

/// Largest message accepted from the client. Arguments can carry file
/// contents, so this is generous; a larger line is refused with a JSON-RPC
/// error and skipped, and the session goes on.
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Write every queued message to stdout until the queue closes.
pub async fn write_stdout(mut rx: mpsc::Receiver<ToClient>) {
    let mut stdout = client_output();
    while let Some(message) = rx.recv().await {
        let mut line = message.to_chunks();
        drop(message);
        line.push_bytes(b"\n");
        if write_pieces(&mut stdout, &line).await.is_err() {
            tracing::warn!("stdout closed; the client is gone");
            break;
        }
    }
}

async fn write_pieces(
    out: &mut (impl AsyncWrite + Unpin + ?Sized),
    line: &Chunks,
) -> std::io::Result<()> {
    for piece in line.pieces() {
        out.write_all(piece).await?;
    }
    out.flush().await
}

/// Feed stdin to the proxy until the client closes it.
pub async fn read_stdin(proxy: Arc<Proxy>) {
    let mut lines = LineReader::new(client_input(), MAX_CLIENT_MESSAGE_BYTES);
    loop {
        match lines.next().await {
            Ok(Some(Frame::Line(line))) => proxy.handle_bytes(&line).await,
            Ok(Some(Frame::TooLong)) => {
                let reason =
                    format!("message larger than {MAX_CLIENT_MESSAGE_BYTES} bytes refused");
                tracing::warn!("{reason}");
                proxy
                    .reject_unreadable(lines.discarded_prefix(), &reason)
                    .await;
            }
            Ok(Some(dropped @ (Frame::OverBudget(_) | Frame::TooSlow(_)))) => {
                let why = dropped.dropped_because().unwrap_or_default();
                let reason = format!("message refused: {why}");
                tracing::warn!("{reason}");
                proxy
                    .reject_unreadable(lines.discarded_prefix(), &reason)
                    .await;
            }
            Ok(None) => break,
            Err(e) => {
                tracing::warn!("stdin failed: {e}");
                break;
            }
        }
    }
}

/// stdin as a non-blocking pipe when it is one, else tokio's stdin.
fn client_input() -> Box<dyn AsyncRead + Unpin + Send> {
    #[cfg(unix)]
    if let Some(pipe) = pipe_of(std::io::stdin().as_fd(), None)
        .and_then(|file| tokio::net::unix::pipe::Receiver::from_file(file).ok())
    {
        return Box::new(pipe);
    }
    Box::new(tokio::io::stdin())
}

/// stdout as a non-blocking pipe when it is one of its own, else tokio's
/// stdout.
fn client_output() -> Box<dyn AsyncWrite + Unpin + Send> {
    #[cfg(unix)]
    if let Some(pipe) = pipe_of(std::io::stdout().as_fd(), Some(std::io::stderr().as_fd()))
        .and_then(|file| tokio::net::unix::pipe::Sender::from_file(file).ok())
    {
        return Box::new(pipe);
    }
    Box::new(tokio::io::stdout())
}

#[cfg(unix)]
use std::os::fd::AsFd;

/// A duplicate of `fd` when it is a pipe (FIFO) that `other` is not also
/// writing to; `None` otherwise (a terminal, a file, a socket, or `2>&1`).
#[cfg(unix)]
fn pipe_of(
    fd: std::os::fd::BorrowedFd<'_>,
    other: Option<std::os::fd::BorrowedFd<'_>>,
) -> Option<std::fs::File> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let identity = |fd: std::os::fd::BorrowedFd<'_>| -> Option<(std::fs::File, u64, u64, bool)> {
        let file = std::fs::File::from(fd.try_clone_to_owned().ok()?);
        let meta = file.metadata().ok()?;
        Some((file, meta.dev(), meta.ino(), meta.file_type().is_fifo()))
    };
    let (file, dev, ino, fifo) = identity(fd)?;
    let shared = other
        .and_then(identity)
        .is_some_and(|(_, d, i, _)| (d, i) == (dev, ino));
    (fifo && !shared).then_some(file)
}
