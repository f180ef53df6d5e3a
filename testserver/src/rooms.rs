//! Broadcast rooms for `/broadcast/<room>`: a registry of `tokio::sync::broadcast`
//! channels, created on first join and removed when the last member leaves.
//!
//! A broadcast channel keeps a fixed ring of messages per room, so a slow client
//! never blocks the sender or the other members: when it falls more than
//! [`ROOM_CAPACITY`] messages behind, it skips the oldest ones and the server
//! counts them as dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

/// Messages a member may fall behind before it starts missing some.
pub(crate) const ROOM_CAPACITY: usize = 1024;

/// One message published to a room.
#[derive(Debug, Clone)]
pub(crate) struct RoomMessage {
    /// The session id of the sending connection, so `echo_self=false` can skip it.
    pub(crate) sender: u64,
    /// Cloning a message clones a reference-counted buffer, not the payload.
    pub(crate) message: Message,
}

/// Every room with at least one member.
///
/// A `std::sync::Mutex` is right here: it is held only to look up, insert or
/// remove one map entry, never across an `.await`, and only on join and leave,
/// not per message.
#[derive(Debug, Default)]
pub(crate) struct Rooms {
    rooms: Mutex<HashMap<String, broadcast::Sender<RoomMessage>>>,
}

impl Rooms {
    /// Joins `room`, creating it if needed.
    pub(crate) fn join(self: &Arc<Self>, room: &str) -> Membership {
        let mut rooms = self.rooms.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let sender = rooms
            .entry(room.to_owned())
            .or_insert_with(|| broadcast::channel(ROOM_CAPACITY).0)
            .clone();
        // Subscribing under the lock orders it against a leaving member's
        // "last one out removes the room" check.
        let receiver = sender.subscribe();
        Membership {
            rooms: Arc::clone(self),
            room: room.to_owned(),
            sender,
            receiver: Some(receiver),
        }
    }

    /// The number of rooms with members, for tests.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.rooms.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }
}

/// One connection's place in a room; leaving happens on drop.
#[derive(Debug)]
pub(crate) struct Membership {
    rooms: Arc<Rooms>,
    room: String,
    sender: broadcast::Sender<RoomMessage>,
    /// Always `Some` until drop, which takes it out to unsubscribe first.
    receiver: Option<broadcast::Receiver<RoomMessage>>,
}

impl Membership {
    /// Publishes to every member, this one included.
    pub(crate) fn publish(&self, message: RoomMessage) {
        // `send` fails only when there are no receivers, and this member is one.
        let _ = self.sender.send(message);
    }

    /// The next message for this member.
    pub(crate) async fn recv(&mut self) -> Result<RoomMessage, broadcast::error::RecvError> {
        match self.receiver.as_mut() {
            Some(receiver) => receiver.recv().await,
            None => Err(broadcast::error::RecvError::Closed),
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut rooms = self.rooms.rooms.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        drop(self.receiver.take());
        if self.sender.receiver_count() == 0 {
            rooms.remove(&self.room);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn members_receive_every_message_and_empty_rooms_disappear() {
        let rooms = Arc::new(Rooms::default());
        let mut first = rooms.join("lobby");
        let mut second = rooms.join("lobby");
        let other = rooms.join("other");
        assert_eq!(rooms.len(), 2);

        first.publish(RoomMessage {
            sender: 1,
            message: Message::text("hello"),
        });
        for member in [&mut first, &mut second] {
            let delivered = member
                .recv()
                .await
                .map(|delivered| (delivered.sender, delivered.message));
            assert_eq!(delivered, Ok((1, Message::text("hello"))));
        }

        drop(other);
        assert_eq!(rooms.len(), 1);
        drop(first);
        assert_eq!(rooms.len(), 1);
        drop(second);
        assert_eq!(rooms.len(), 0);
    }

    #[tokio::test]
    async fn a_lagging_member_skips_old_messages() {
        let rooms = Arc::new(Rooms::default());
        let mut slow = rooms.join("lobby");
        for index in 0..ROOM_CAPACITY + 5 {
            slow.publish(RoomMessage {
                sender: 1,
                message: Message::text(index.to_string()),
            });
        }
        assert!(matches!(slow.recv().await, Err(broadcast::error::RecvError::Lagged(5))));
        let next = slow.recv().await.map(|delivered| delivered.message);
        assert_eq!(next, Ok(Message::text("5")));
    }
}
