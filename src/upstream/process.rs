//! The stdio transport: the upstream is a child process; each message is one
//! line of JSON on its stdin or stdout. The process exiting (or closing its
//! stdout) ends the connection.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::connection::{
    MAX_UPSTREAM_MESSAGE_BYTES, Outgoing, Upstream, UpstreamError, UpstreamEvent,
};
use crate::config::ProcessSpec;
use crate::framing::{Frame, LineReader};

/// An upstream's process group (led by the process we started); killed
/// when dropped, so no part of a server outlives the firewall or its session.
pub(super) struct ProcessGroup {
    pgid: Option<i32>,
    /// Tells the task relaying the server's stderr that the server is gone
    /// ([`crate::logging::relay`]): a process that left the group may hold
    /// the pipe open for ever.
    gone: CancellationToken,
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid.filter(|&p| p > 0) {
            // SAFETY: killpg with a group id we created; an error (the group
            // is already gone) is harmless.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
        self.gone.cancel();
    }
}

/// Start the server process and the tasks that pump its pipes.
pub(super) fn start(
    name: &str,
    spec: &ProcessSpec,
    deadline: Duration,
    events: mpsc::Sender<UpstreamEvent>,
) -> Result<Arc<Upstream>, UpstreamError> {
    let (mut child, group) = spawn(name, spec)?;
    let stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (upstream, rx) = Upstream::new(name);
    crate::scope::spawn(write_loop(stdin, rx));
    crate::scope::spawn_lingering(read_loop(
        upstream.clone(),
        stdout,
        child,
        group,
        deadline,
        events,
    ));
    Ok(upstream)
}

/// Start the server process, its stderr relayed to the firewall's log
/// ([`crate::logging::relay`]) by a task that ends when the process
/// closes it, or [`LAST_WORDS`] after the returned group is dropped.
pub(super) fn spawn(
    name: &str,
    spec: &ProcessSpec,
) -> Result<(Child, ProcessGroup), UpstreamError> {
    let mut child = command(spec).spawn().map_err(|e| UpstreamError::Spawn {
        server: name.to_string(),
        message: format!("{}: {e}", spec.command),
    })?;
    let group = ProcessGroup {
        pgid: child.id().map(|id| id as i32),
        gone: CancellationToken::new(),
    };
    let stderr = child.stderr.take().expect("stderr is piped");
    match stderr.into_owned_fd() {
        Ok(stderr) => {
            let name = name.to_string();
            let gone = group.gone.clone();
            // Its last words, then no more: a process that left the group
            // may hold the pipe open for ever.
            let stop = async move {
                gone.cancelled().await;
                tokio::time::sleep(LAST_WORDS).await
            };
            // On the runtime, not the session's scope: it must read the
            // server's last words as it is stopped.
            tokio::spawn(async move { crate::logging::relay(&name, stderr, stop).await });
        }
        Err(e) => tracing::warn!(server = %name, "its stderr cannot be relayed: {e}"),
    }
    Ok((child, group))
}

fn command(spec: &ProcessSpec) -> Command {
    let mut cmd = Command::new(&spec.command);
    cmd.args(&spec.args)
        .envs(&spec.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        // The server's own logs go to ours (through the firewall's queue),
        // never to the client.
        .stderr(Stdio::piped())
        // Its own process group, so the whole server goes when we stop it,
        // not just the command we started (`npx`, `sh -c`, `uvx` start the
        // real server as their child).
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    cmd
}

async fn write_loop(mut stdin: tokio::process::ChildStdin, mut rx: mpsc::Receiver<Outgoing>) {
    while let Some(message) = rx.recv().await {
        let mut line = message.body;
        line.push('\n');
        if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
            break;
        }
    }
}

async fn read_loop(
    upstream: Arc<Upstream>,
    stdout: tokio::process::ChildStdout,
    child: Child,
    group: ProcessGroup,
    deadline: Duration,
    events: mpsc::Sender<UpstreamEvent>,
) {
    // Dropped when this task ends or is dropped with the runtime (the
    // firewall stops): whatever is left of the server's group is killed.
    let group = group;
    let mut lines = LineReader::new(stdout, MAX_UPSTREAM_MESSAGE_BYTES).deadline(deadline);
    let mut exit = Exit::new(child);
    loop {
        let next = tokio::select! {
            next = lines.next() => next,
            () = exit.stdout_done() => {
                exit.held_open(upstream.name());
                break;
            }
            _ = crate::scope::cancelled() => {
                // The session closed: stop the whole server and reap it
                // here, so nothing of it is left running or a zombie.
                drop(group);
                let status = exit.kill().await;
                tracing::debug!(server = %upstream.name(), "stopped with its session: {status}");
                return;
            }
        };
        match next {
            Ok(Some(Frame::Line(line))) => upstream.deliver(&events, line).await,
            Ok(Some(Frame::TooLong)) => {
                upstream.fail_by_prefix(
                    lines.discarded_prefix(),
                    &format!("the answer is over the {MAX_UPSTREAM_MESSAGE_BYTES}-byte limit"),
                );
                tracing::warn!(server = %upstream.name(), "dropped a message over {MAX_UPSTREAM_MESSAGE_BYTES} bytes");
            }
            Ok(Some(dropped @ (Frame::OverBudget(_) | Frame::TooSlow(_)))) => {
                let why = dropped.dropped_because().unwrap_or_default();
                let reason = super::connection::dropped_answer(why);
                upstream.fail_by_prefix(lines.discarded_prefix(), &reason);
                tracing::warn!(server = %upstream.name(), "{reason}");
            }
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(server = %upstream.name(), "reading from upstream failed: {e}");
                break;
            }
        }
    }
    upstream.finish(&events, exit.status().await).await;
}

/// How long a server's pipes are still read once it is gone (stdout once
/// the process has exited, stderr once its group was dropped): what it
/// wrote last.
const LAST_WORDS: Duration = Duration::from_secs(2);

/// A server process whose stdout is being read, and whether it has exited.
pub(super) struct Exit {
    child: Child,
    /// How it exited, once it has, and until when its stdout is read.
    exited: Option<(String, tokio::time::Instant)>,
}

impl Exit {
    pub(super) fn new(child: Child) -> Exit {
        Exit {
            child,
            exited: None,
        }
    }

    /// Resolves [`LAST_WORDS`] after the process exited: its stdout is done
    /// with even if still open (a process it started that left its group
    /// may hold it), so the server is seen to be gone. Cancel-safe: a read
    /// loop polls it beside its next line.
    pub(super) async fn stdout_done(&mut self) {
        let until = match &self.exited {
            Some((_, until)) => *until,
            None => {
                let status = describe(self.child.wait().await);
                let until = tokio::time::Instant::now() + LAST_WORDS;
                self.exited = Some((status, until));
                until
            }
        };
        tokio::time::sleep_until(until).await
    }

    /// Say why a read loop stops with the server's stdout still open.
    pub(super) fn held_open(&self, server: &str) {
        tracing::warn!(
            server,
            "it exited, but its stdout is still held open (by a process it started?): taken as closed"
        );
    }

    /// Kill the process (if it still runs) and reap it: how it ended.
    pub(super) async fn kill(&mut self) -> String {
        if let Some((status, _)) = &self.exited {
            return status.clone();
        }
        let _ = self.child.start_kill();
        describe(self.child.wait().await)
    }

    /// How the process ended, waiting for it if need be.
    pub(super) async fn status(mut self) -> String {
        match self.exited.take() {
            Some((status, _)) => status,
            None => describe(self.child.wait().await),
        }
    }
}

fn describe(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(e) => format!("wait failed: {e}"),
    }
}
