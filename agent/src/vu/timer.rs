//! The receive timeout's timer. A VU keeps one from one receive to the next and touches the
//! timer wheel once per timeout period, not once per message; a receive that finds its socket
//! not ready polls the timer only when it has fired or holds no waker yet.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use crate::connection::Socket;

/// A VU's receive timeout. tokio's timer takes a fresh clone of the task's waker every time it
/// is polled; `holds_waker` says the timer already has this VU's, so a receive that finds its
/// socket not ready only polls the timer when it has fired or was never polled.
pub(super) struct ReceiveTimer {
    pub(super) sleep: Pin<Box<tokio::time::Sleep>>,
    pub(super) holds_waker: bool,
}

/// The socket's next item, or `None` once `deadline` has passed. The timer is armed lazily: a
/// timer already due before `deadline` is left alone and, when it fires early, moved on to
/// `deadline`; only a deadline earlier than the armed one re-arms it at once. Receives one after
/// another with the same timeout thus touch the timer wheel once per timeout period, not once
/// per message, and a timeout still fires at its own deadline.
///
/// A function returning the poll, not an `async fn`: the receive's future holds only the three
/// arguments while it waits.
pub(super) fn next_before<'a>(
    socket: &'a mut Socket,
    timer: &'a mut ReceiveTimer,
    deadline: tokio::time::Instant,
) -> impl Future<Output = Option<Option<Result<Message, tokio_tungstenite::tungstenite::Error>>>> + 'a {
    if timer.sleep.is_elapsed() {
        // A fired timer has given its waker away.
        timer.holds_waker = false;
        timer.sleep.as_mut().reset(deadline);
    } else if timer.sleep.deadline() > deadline {
        // Moved while armed: it keeps the waker.
        timer.sleep.as_mut().reset(deadline);
    }
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(next) = socket.poll_next_unpin(cx) {
            return Poll::Ready(Some(next));
        }
        // Polled only when it may have fired, or has no waker yet: the VU's task is the only
        // one that polls it, so a waker it holds is this task's.
        if timer.holds_waker && !timer.sleep.is_elapsed() {
            return Poll::Pending;
        }
        while timer.sleep.as_mut().poll(cx).is_ready() {
            if timer.sleep.deadline() >= deadline {
                timer.holds_waker = false;
                return Poll::Ready(None);
            }
            timer.sleep.as_mut().reset(deadline);
        }
        timer.holds_waker = true;
        Poll::Pending
    })
}
