//! A connection's task that wakes itself is polled again on the spot.
//!
//! hyper reads a request's body on the connection's task and hands it over
//! a channel to the handler, which runs on that same task: every POST
//! wakes the task while it is running. tokio takes a task woken while it
//! runs for one that yielded: it goes to the back of the worker's queue
//! and an idle worker is woken to steal it (a `futex` wake, that worker's
//! context switches, and often the connection moving to the other worker
//! for the rest of the call). [`Repoll`] gives the connection a waker of
//! its own: a wake that comes while the connection is being polled is
//! noted and the connection polled again before the task returns, and
//! only wakes from outside (a socket, a timer, the answer arriving) reach
//! the runtime. Measured in docs/performance.md.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;

/// Polls of the connection per poll of its task. A future that keeps
/// waking itself (tokio's cooperative budget spent, say) is handed back to
/// the runtime after this many, as it would have been without [`Repoll`].
const MAX_POLLS: usize = 4;

/// Nobody is polling the connection: a wake goes to the task's waker.
const IDLE: u8 = 0;
/// The connection is being polled: a wake is only noted.
const POLLING: u8 = 1;
/// Woken while being polled: poll it again.
const WOKEN: u8 = 2;

/// `inner`, polled with a waker that absorbs its own wakes (see the module).
pub struct Repoll<F> {
    inner: Pin<Box<F>>,
    state: Arc<State>,
    waker: Waker,
}

struct State {
    phase: AtomicU8,
    task: AtomicWaker,
}

impl<F: Future> Repoll<F> {
    pub fn new(inner: F) -> Repoll<F> {
        let state = Arc::new(State {
            phase: AtomicU8::new(IDLE),
            task: AtomicWaker::new(),
        });
        Repoll {
            inner: Box::pin(inner),
            waker: Waker::from(state.clone()),
            state,
        }
    }
}

impl<F: Future> Future for Repoll<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        this.state.task.register(cx.waker());
        let mut inner_cx = Context::from_waker(&this.waker);
        for _ in 0..MAX_POLLS {
            this.state.phase.store(POLLING, Ordering::SeqCst);
            if let Poll::Ready(out) = this.inner.as_mut().poll(&mut inner_cx) {
                this.state.phase.store(IDLE, Ordering::SeqCst);
                return Poll::Ready(out);
            }
            let settled = this.state.phase.compare_exchange(
                POLLING,
                IDLE,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
            if settled.is_ok() {
                return Poll::Pending;
            }
        }
        this.state.phase.store(IDLE, Ordering::SeqCst);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Wake for State {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let noted = self
            .phase
            .compare_exchange(POLLING, WOKEN, Ordering::SeqCst, Ordering::SeqCst);
        match noted {
            Ok(_) | Err(WOKEN) => {}
            Err(_) => self.task.wake(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Pending the first `n` polls, waking itself each time (as hyper's
    /// body channel does), then ready.
    struct WakesItself {
        left: usize,
        polls: Arc<AtomicUsize>,
    }

    impl Future for WakesItself {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.left == 0 {
                return Poll::Ready(());
            }
            self.left -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    /// Counts the wakes that reach the task.
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll_once<F: Future>(f: &mut Repoll<F>, task: &Arc<Count>) -> Poll<F::Output> {
        let waker = Waker::from(task.clone());
        Pin::new(f).poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn a_wake_during_its_own_poll_is_answered_by_polling_again_not_by_the_runtime() {
        let polls = Arc::new(AtomicUsize::new(0));
        let task = Arc::new(Count(AtomicUsize::new(0)));
        let mut f = Repoll::new(WakesItself {
            left: 2,
            polls: polls.clone(),
        });
        assert!(poll_once(&mut f, &task).is_ready());
        assert_eq!(polls.load(Ordering::SeqCst), 3);
        assert_eq!(task.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_future_that_keeps_waking_itself_goes_back_to_the_runtime() {
        let polls = Arc::new(AtomicUsize::new(0));
        let task = Arc::new(Count(AtomicUsize::new(0)));
        let mut f = Repoll::new(WakesItself {
            left: usize::MAX,
            polls: polls.clone(),
        });
        assert!(poll_once(&mut f, &task).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), MAX_POLLS);
        assert_eq!(task.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_wake_from_outside_between_polls_reaches_the_task() {
        let task = Arc::new(Count(AtomicUsize::new(0)));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut f = Repoll::new(rx);
        assert!(poll_once(&mut f, &task).is_pending());
        tx.send(()).unwrap();
        assert_eq!(task.0.load(Ordering::SeqCst), 1);
        assert!(poll_once(&mut f, &task).is_ready());
    }
}
