//! Socket read buffers lent by the worker thread, so that an idle connection holds none.
//!
//! A connection's socket reads land in a [`READ_CHUNK`]-byte buffer taken from its worker's free
//! list only when the read brings bytes; the buffer goes back once the WebSocket above has taken
//! every byte of it. A read that finds nothing (the connection is idle) takes a buffer and gives
//! it back at once. What a connection holds between reads is an [`Unread`]: 16 bytes, no buffer,
//! unless bytes wait to be taken. The WebSocket's own read buffer is kept small
//! ([`crate::connection::websocket_config`]), so tungstenite's reads of it are copies out of the
//! lent buffer, and socket reads stay [`READ_CHUNK`] bytes.
//!
//! Workers are threads with a runtime each, so the free list is the thread's own: no lock.

use std::cell::RefCell;

use tokio::io::ReadBuf;

/// Bytes a socket read may bring at once.
pub const READ_CHUNK: usize = 16 * 1024;

/// Free buffers a worker keeps; more are freed when given back. Buffers are out only while
/// their connection has bytes not yet taken, a few at a time on a worker.
const KEPT_FREE: usize = 64;

type Chunk = Box<[u8; READ_CHUNK]>;

thread_local! {
    static FREE: RefCell<Vec<Chunk>> = const { RefCell::new(Vec::new()) };
}

/// A buffer from this thread's free list, or a new one (zero-filled once, when made).
pub fn lend() -> Chunk {
    FREE.with(|free| free.borrow_mut().pop()).unwrap_or_else(|| {
        vec![0u8; READ_CHUNK]
            .into_boxed_slice()
            .try_into()
            .expect("READ_CHUNK bytes")
    })
}

/// Gives a buffer back to this thread's free list (or frees it when the list is full).
pub fn give_back(chunk: Chunk) {
    FREE.with(|free| {
        let mut free = free.borrow_mut();
        if free.len() < KEPT_FREE {
            free.push(chunk);
        }
    });
}

/// Bytes read from the socket and not yet taken by the reader above: a lent buffer and the
/// range of it still to take, or nothing.
#[derive(Default)]
pub struct Unread {
    chunk: Option<Chunk>,
    start: u16,
    end: u16,
}

const _: () = assert!(READ_CHUNK <= u16::MAX as usize);

impl Unread {
    pub fn is_empty(&self) -> bool {
        self.chunk.is_none()
    }

    /// Holds the first `filled` bytes of `chunk`, just read (`filled` > 0).
    pub fn hold(&mut self, chunk: Chunk, filled: usize) {
        debug_assert!(self.chunk.is_none() && filled > 0 && filled <= READ_CHUNK);
        self.chunk = Some(chunk);
        self.start = 0;
        self.end = filled as u16;
    }

    /// Copies as many waiting bytes as `out` has room for; the buffer goes back to the free list
    /// once all are taken.
    pub fn take_into(&mut self, out: &mut ReadBuf<'_>) {
        let Some(chunk) = &self.chunk else {
            return;
        };
        let count = out.remaining().min(usize::from(self.end - self.start));
        let start = usize::from(self.start);
        out.put_slice(&chunk[start..start + count]);
        self.start += count as u16;
        if self.start == self.end {
            if let Some(chunk) = self.chunk.take() {
                give_back(chunk);
            }
        }
    }
}

impl Drop for Unread {
    fn drop(&mut self) {
        if let Some(chunk) = self.chunk.take() {
            give_back(chunk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_taken_in_order_and_the_buffer_goes_back_once_all_are() {
        FREE.with(|free| free.borrow_mut().clear());
        let mut chunk = lend();
        chunk[..10].copy_from_slice(b"0123456789");
        let mut unread = Unread::default();
        unread.hold(chunk, 10);
        let mut first = [0u8; 4];
        let mut out = ReadBuf::new(&mut first);
        unread.take_into(&mut out);
        assert_eq!(out.filled(), b"0123");
        assert!(!unread.is_empty());
        assert_eq!(FREE.with(|free| free.borrow().len()), 0);
        let mut rest = [0u8; 64];
        let mut out = ReadBuf::new(&mut rest);
        unread.take_into(&mut out);
        assert_eq!(out.filled(), b"456789");
        assert!(unread.is_empty());
        assert_eq!(FREE.with(|free| free.borrow().len()), 1);
        // Nothing waits: nothing is copied.
        unread.take_into(&mut out);
        assert_eq!(out.filled(), b"456789");
    }

    #[test]
    fn a_full_free_list_frees_what_comes_back() {
        FREE.with(|free| free.borrow_mut().clear());
        let chunks: Vec<Chunk> = (0..KEPT_FREE + 3).map(|_| lend()).collect();
        chunks.into_iter().for_each(give_back);
        assert_eq!(FREE.with(|free| free.borrow().len()), KEPT_FREE);
    }

    #[test]
    fn an_unread_dropped_with_bytes_waiting_gives_its_buffer_back() {
        FREE.with(|free| free.borrow_mut().clear());
        let mut unread = Unread::default();
        unread.hold(lend(), 3);
        drop(unread);
        assert_eq!(FREE.with(|free| free.borrow().len()), 1);
    }
}
