//! Structured lifetimes for the tasks of one session.
//!
//! Every session (stdio, each Streamable HTTP or legacy SSE session, each
//! stateless bridge) runs on the process runtime inside a [`Scope`]: a
//! cancellation token and a task tracker. Whatever the session starts —
//! request tasks, upstream pipe pumps, HTTP pumps and listeners, held-task
//! jobs — is spawned into the scope with [`spawn`] (or [`spawn_lingering`]
//! for the few tasks that must tidy up after the cancel), so closing the
//! session ends all of it, and [`Scope::finished`] says when it has.
//!
//! # Invariants
//!
//! - A task spawned with [`spawn`] is dropped at its next await point after
//!   the scope is cancelled; the `Arc`s it holds (the proxy, an upstream)
//!   go with it, so reference cycles through tasks cannot keep a closed
//!   session alive.
//! - A task spawned with [`spawn_lingering`] is tracked but not dropped: it
//!   watches [`cancelled`] itself and ends (an upstream's reader kills its
//!   process group and reaps the child; a Streamable HTTP upstream pump
//!   sends its `DELETE`).
//! - The current scope travels with the task (a task-local), so code deep
//!   in the upstream modules needs no handle passed down. Outside any scope
//!   (tests, one-shot commands) both spawns fall back to the runtime.
//! - So does the session's principal's [`Holder`]: a message its tasks
//!   read is charged to that principal's share of the memory budget
//!   ([`crate::budget`]).

use std::future::Future;
use std::time::Duration;

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::budget::Holder;

tokio::task_local! {
    static CURRENT: Scope;
}

/// One session's tasks; cloning shares them.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    cancel: CancellationToken,
    tasks: TaskTracker,
    /// The session's principal, charged for the messages its tasks read.
    holder: Option<Arc<Holder>>,
}

impl Scope {
    pub fn new() -> Scope {
        Scope::default()
    }

    /// A scope whose tasks' messages are charged to `principal`'s share
    /// of the process's budget.
    pub fn for_principal(principal: &str) -> Scope {
        Scope {
            holder: Some(crate::budget::big_messages().holder(principal)),
            ..Scope::default()
        }
    }

    /// The scope of the task running now, if any.
    pub fn current() -> Option<Scope> {
        CURRENT.try_with(Scope::clone).ok()
    }

    /// Run `f` (synchronous set-up that spawns tasks) inside this scope.
    pub fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self.clone(), f)
    }

    /// Spawn `task` into this scope; it is dropped when the scope closes.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let cancel = self.cancel.clone();
        // Boxed once here: the wrappers below (this `select!`, the
        // task-local, the tracker, tokio's task cell) each move the future
        // they hold, and a request's state machine is ~10 KB (nine copies
        // of it were ~10 % of an allowed call's instructions).
        let task = Box::pin(task);
        self.track(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = task => {}
            }
        })
    }

    /// Run `work` on the calling task as if it were one of this scope's:
    /// with the scope as its own, and dropped when the scope closes. Not
    /// tracked: the caller waits for it.
    pub async fn run<F>(&self, work: F)
    where
        F: Future<Output = ()>,
    {
        let cancel = self.cancel.clone();
        CURRENT
            .scope(self.clone(), async move {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = work => {}
                }
            })
            .await
    }

    /// Spawn `task` into this scope without dropping it at close: it must
    /// end by itself once [`Scope::is_closed`] (see [`cancelled`]).
    pub fn spawn_lingering<F>(&self, task: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.track(Box::pin(task))
    }

    /// Spawn `task` as it is, tracked and with this scope as its own.
    fn track<F>(&self, task: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(CURRENT.scope(self.clone(), task))
    }

    /// Cancel every task of the scope and take no more. Idempotent.
    pub fn close(&self) {
        self.cancel.cancel();
        self.tasks.close();
    }

    pub fn is_closed(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Resolves when the scope is closed.
    pub async fn closed(&self) {
        self.cancel.cancelled().await
    }

    /// Tasks still running in this scope.
    pub fn running(&self) -> usize {
        self.tasks.len()
    }

    /// Wait until the scope is closed and all its tasks have ended, for at
    /// most `limit`. `false` if some were still running then.
    pub async fn finished(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.tasks.wait()).await.is_ok()
    }
}

/// The principal charged for what the running task reads, if it runs in
/// a session's scope.
pub fn holder() -> Option<Arc<Holder>> {
    CURRENT.try_with(|s| s.holder.clone()).ok().flatten()
}

/// Spawn into the current scope (dropped when it closes), or onto the
/// runtime when there is none.
pub fn spawn<F>(task: F) -> JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    match Scope::current() {
        Some(scope) => scope.spawn(task),
        None => tokio::spawn(task),
    }
}

/// Spawn into the current scope, tracked but left to end by itself after
/// the scope closes (it should watch [`cancelled`]); onto the runtime when
/// there is no scope.
pub fn spawn_lingering<F>(task: F) -> JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    match Scope::current() {
        Some(scope) => scope.spawn_lingering(task),
        None => tokio::spawn(task),
    }
}

/// Run blocking work (SQLite, a file read, an `fsync`) from async code
/// without stalling the other tasks of the runtime's worker: on the
/// multi-threaded runtime the worker hands its other tasks to another
/// thread first (`block_in_place`); elsewhere (a current-thread runtime, no
/// runtime) it simply runs.
pub fn off_worker<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// `work`'s output, or `None` once the current scope closes first.
pub async fn unless_closed<T>(work: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        out = work => Some(out),
        _ = cancelled() => None,
    }
}

/// Resolves when the current scope closes; never, outside a scope.
pub async fn cancelled() {
    match Scope::current() {
        Some(scope) => scope.closed().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test]
    async fn closing_a_scope_ends_its_tasks_and_those_they_spawned() {
        let scope = Scope::new();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        scope.spawn(async move {
            // A grandchild, spawned through the task-local scope.
            spawn(async move {
                let _keep = tx;
                std::future::pending::<()>().await
            });
            std::future::pending::<()>().await
        });
        tokio::task::yield_now().await;
        assert_eq!(scope.running(), 2);
        scope.close();
        assert!(scope.finished(Duration::from_secs(5)).await);
        // The grandchild's sender was dropped with it.
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_lingering_task_sees_the_close_and_finishes_its_work() {
        let scope = Scope::new();
        let tidied = Arc::new(AtomicBool::new(false));
        let flag = tidied.clone();
        scope.spawn_lingering(async move {
            cancelled().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            flag.store(true, Ordering::SeqCst);
        });
        scope.close();
        assert!(scope.finished(Duration::from_secs(5)).await);
        assert!(tidied.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn outside_a_scope_tasks_run_on_the_runtime() {
        assert!(Scope::current().is_none());
        let (tx, rx) = tokio::sync::oneshot::channel();
        spawn(async move {
            let _ = tx.send(());
        });
        assert!(rx.await.is_ok());
    }

    #[tokio::test]
    async fn work_run_in_a_scope_spawns_into_it_and_ends_with_it() {
        let scope = Scope::new();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let closer = scope.clone();
        scope
            .run(async move {
                assert!(Scope::current().is_some());
                // What it spawns through the task-local scope is the scope's.
                spawn(async move {
                    let _keep = tx;
                    std::future::pending::<()>().await
                });
                closer.close();
                // Dropped at the close, not waited for.
                std::future::pending::<()>().await
            })
            .await;
        assert!(scope.finished(Duration::from_secs(5)).await);
        assert!(rx.recv().await.is_none());
    }
}
