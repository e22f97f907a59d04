//! [`LocalFanout`]: applies a gateway's actions to per-room topics in
//! memory, as the reactor's topics do on sockets. For tests, the fuzz
//! target and embedding the gateway without the reactor.

use std::collections::HashMap;
use std::hash::Hash;

use super::core::Action;
use super::protocol::Encoding;
use super::room::RoomName;

/// A frame for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery<C> {
    /// The connection.
    pub conn: C,
    /// Binary (Protobuf) or text (JSON).
    pub binary: bool,
    /// The frame.
    pub bytes: Vec<u8>,
}

/// Topics per (room, encoding), subscribers in subscription order.
#[derive(Debug)]
pub struct LocalFanout<C> {
    topics: HashMap<(RoomName, Encoding), Vec<C>>,
    /// Connections the gateway closed, with the code.
    pub closed: Vec<(C, u16)>,
}

impl<C> Default for LocalFanout<C> {
    fn default() -> Self {
        LocalFanout {
            topics: HashMap::new(),
            closed: Vec::new(),
        }
    }
}

impl<C: Copy + Eq + Hash> LocalFanout<C> {
    /// No topics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Apply `actions` in order; frames go to `out`.
    pub fn apply<I: IntoIterator<Item = Action<C>>>(
        &mut self,
        actions: I,
        out: &mut Vec<Delivery<C>>,
    ) {
        for a in actions {
            match a {
                Action::Send { conn, encoding, .. } => {
                    let bytes = a.send_bytes().unwrap_or_default().to_vec();
                    out.push(Delivery {
                        conn,
                        binary: encoding.is_binary(),
                        bytes,
                    });
                }
                Action::Subscribe {
                    conn,
                    room,
                    encoding,
                } => {
                    let t = self.topics.entry((room, encoding)).or_default();
                    if !t.contains(&conn) {
                        t.push(conn);
                    }
                }
                Action::Unsubscribe {
                    conn,
                    room,
                    encoding,
                } => {
                    let key = (room, encoding);
                    if let Some(t) = self.topics.get_mut(&key) {
                        t.retain(|c| *c != conn);
                        if t.is_empty() {
                            self.topics.remove(&key);
                        }
                    }
                }
                Action::Publish { room, message } => {
                    for enc in Encoding::ALL {
                        // Encoded only for an encoding somebody reads.
                        let Some(subs) = self.topics.get(&(room.clone(), enc)) else {
                            continue;
                        };
                        let bytes = message.bytes(enc);
                        for &conn in subs {
                            out.push(Delivery {
                                conn,
                                binary: enc.is_binary(),
                                bytes: bytes.to_vec(),
                            });
                        }
                    }
                }
                Action::Close { conn, code, .. } => self.closed.push((conn, code)),
            }
        }
    }

    /// Subscribers of a room's topic in one encoding.
    pub fn subscribers(&self, room: &RoomName, encoding: Encoding) -> &[C] {
        self.topics
            .get(&(room.clone(), encoding))
            .map_or(&[], |v| v)
    }

    /// Topics with subscribers.
    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }
}
