//! Topics: which connections subscribed to which names (sans-IO).
//!
//! Connection ids in, connection ids out: the registry never sees a socket
//! or a frame. The reactor asks it for a topic's subscribers when a message
//! is published and delivers the one encoded frame to each of them.
//!
//! Every operation is O(1) expected, except [`Topics::remove_conn`], which is
//! O(subscriptions of that connection): a topic keeps its subscribers in a
//! dense `Vec` (publishing walks it), each connection keeps where it sits in
//! every topic it joined, and an unsubscribe swaps the last subscriber into
//! the hole (order among subscribers is not meaningful; order of messages is
//! kept by the per-connection output queues).

use std::collections::HashMap;
use std::hash::Hash;

/// Longest topic name accepted, in bytes.
pub const MAX_TOPIC_LEN: usize = 1024;

/// Why a subscription was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicError {
    /// The name is empty or longer than [`MAX_TOPIC_LEN`].
    BadName,
    /// The connection is not open.
    NotOpen,
}

impl std::fmt::Display for TopicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::BadName => "topic name empty or too long",
            Self::NotOpen => "connection not open",
        })
    }
}

impl std::error::Error for TopicError {}

#[derive(Debug)]
struct Topic<Id> {
    name: Box<str>,
    subscribers: Vec<Id>,
}

/// The subscription registry. `Id` is the connection id type.
#[derive(Debug)]
pub struct Topics<Id> {
    /// Topic slots; a freed slot's index goes to `free`.
    slots: Vec<Option<Topic<Id>>>,
    free: Vec<u32>,
    by_name: HashMap<Box<str>, u32>,
    /// Per connection: (topic slot, index in its `subscribers`).
    of_conn: HashMap<Id, Vec<(u32, u32)>>,
}

impl<Id> Default for Topics<Id> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            by_name: HashMap::new(),
            of_conn: HashMap::new(),
        }
    }
}

impl<Id: Copy + Eq + Hash> Topics<Id> {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Subscribe `id` to `topic`. `Ok(false)` if it already was.
    ///
    /// # Errors
    /// [`TopicError::BadName`] for an empty or overlong name.
    pub fn subscribe(&mut self, id: Id, topic: &str) -> Result<bool, TopicError> {
        if topic.is_empty() || topic.len() > MAX_TOPIC_LEN {
            return Err(TopicError::BadName);
        }
        let slot = match self.by_name.get(topic) {
            Some(&slot) => slot,
            None => self.create(topic),
        };
        let mine = self.of_conn.entry(id).or_default();
        if mine.iter().any(|&(s, _)| s == slot) {
            return Ok(false);
        }
        let t = self.slots[slot as usize]
            .as_mut()
            .expect("a named topic has a slot");
        mine.push((slot, t.subscribers.len() as u32));
        t.subscribers.push(id);
        Ok(true)
    }

    fn create(&mut self, topic: &str) -> u32 {
        let t = Topic {
            name: topic.into(),
            subscribers: Vec::new(),
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(t);
                slot
            }
            None => {
                self.slots.push(Some(t));
                (self.slots.len() - 1) as u32
            }
        };
        self.by_name.insert(topic.into(), slot);
        slot
    }

    /// Unsubscribe `id` from `topic`. `false` if it was not subscribed.
    pub fn unsubscribe(&mut self, id: Id, topic: &str) -> bool {
        let Some(&slot) = self.by_name.get(topic) else {
            return false;
        };
        let Some(mine) = self.of_conn.get_mut(&id) else {
            return false;
        };
        let Some(at) = mine.iter().position(|&(s, _)| s == slot) else {
            return false;
        };
        let (_, index) = mine.swap_remove(at);
        if mine.is_empty() {
            self.of_conn.remove(&id);
        }
        self.detach(slot, index);
        true
    }

    /// Remove the subscriber at `index` of topic `slot`, moving the last one
    /// into its place; drop the topic when it empties.
    fn detach(&mut self, slot: u32, index: u32) {
        let t = self.slots[slot as usize]
            .as_mut()
            .expect("a subscribed topic has a slot");
        t.subscribers.swap_remove(index as usize);
        if let Some(&moved) = t.subscribers.get(index as usize) {
            // The former last subscriber now sits at `index`.
            let entries = self
                .of_conn
                .get_mut(&moved)
                .expect("a subscriber has its entries");
            for e in entries.iter_mut() {
                if e.0 == slot {
                    e.1 = index;
                }
            }
        }
        if t.subscribers.is_empty() {
            let t = self.slots[slot as usize].take().expect("checked above");
            self.by_name.remove(&t.name);
            self.free.push(slot);
        }
    }

    /// Forget every subscription of `id` (its connection closed). Returns
    /// how many there were.
    pub fn remove_conn(&mut self, id: Id) -> usize {
        let Some(mine) = self.of_conn.remove(&id) else {
            return 0;
        };
        let n = mine.len();
        // `id` sits once in each topic, so a detach's swap only ever moves
        // another connection's entry: the indices in `mine` stay valid.
        for (slot, index) in mine {
            self.detach(slot, index);
        }
        n
    }

    /// The subscribers of `topic` (empty if nobody subscribed).
    pub fn subscribers(&self, topic: &str) -> &[Id] {
        match self.by_name.get(topic) {
            Some(&slot) => self.slots[slot as usize]
                .as_ref()
                .map_or(&[], |t| t.subscribers.as_slice()),
            None => &[],
        }
    }

    /// Whether `id` is subscribed to `topic`.
    pub fn is_subscribed(&self, id: Id, topic: &str) -> bool {
        match (self.by_name.get(topic), self.of_conn.get(&id)) {
            (Some(&slot), Some(mine)) => mine.iter().any(|&(s, _)| s == slot),
            _ => false,
        }
    }

    /// The topics `id` is subscribed to.
    pub fn topics_of(&self, id: Id) -> impl Iterator<Item = &str> + '_ {
        self.of_conn
            .get(&id)
            .into_iter()
            .flatten()
            .filter_map(|&(slot, _)| self.slots[slot as usize].as_ref())
            .map(|t| &*t.name)
    }

    /// Number of topics with at least one subscriber.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// No topic has a subscriber.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Number of (connection, topic) subscriptions.
    pub fn subscriptions(&self) -> usize {
        self.of_conn.values().map(Vec::len).sum()
    }

    /// Check every internal cross-reference (for tests and fuzzing).
    pub fn check_invariants(&self) {
        let mut count = 0;
        for (slot, t) in self.slots.iter().enumerate() {
            let Some(t) = t else { continue };
            assert!(!t.subscribers.is_empty(), "an empty topic is kept");
            assert_eq!(self.by_name.get(&t.name), Some(&(slot as u32)));
            for (i, id) in t.subscribers.iter().enumerate() {
                let mine = self.of_conn.get(id).expect("subscriber has entries");
                assert!(mine.contains(&(slot as u32, i as u32)), "stale index");
                count += 1;
            }
        }
        assert_eq!(count, self.subscriptions());
        assert_eq!(
            self.by_name.len(),
            self.slots.iter().filter(|t| t.is_some()).count()
        );
        for mine in self.of_conn.values() {
            assert!(!mine.is_empty(), "a connection without topics is kept");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(t: &Topics<u32>, topic: &str) -> Vec<u32> {
        let mut v = t.subscribers(topic).to_vec();
        v.sort_unstable();
        v
    }

    #[test]
    fn subscribe_unsubscribe_and_cleanup() {
        let mut t = Topics::new();
        assert_eq!(t.subscribe(1, "a"), Ok(true));
        assert_eq!(t.subscribe(1, "a"), Ok(false), "twice is once");
        assert_eq!(t.subscribe(2, "a"), Ok(true));
        assert_eq!(t.subscribe(3, "a"), Ok(true));
        assert_eq!(t.subscribe(2, "b"), Ok(true));
        t.check_invariants();
        assert_eq!(sorted(&t, "a"), [1, 2, 3]);
        assert!(t.unsubscribe(1, "a"));
        assert!(!t.unsubscribe(1, "a"));
        assert!(!t.unsubscribe(9, "a"));
        assert!(!t.unsubscribe(2, "nope"));
        t.check_invariants();
        assert_eq!(sorted(&t, "a"), [2, 3]);
        assert_eq!(t.remove_conn(2), 2);
        t.check_invariants();
        assert_eq!(sorted(&t, "a"), [3]);
        assert!(t.subscribers("b").is_empty());
        assert_eq!(t.len(), 1, "an emptied topic is dropped");
        assert_eq!(t.remove_conn(3), 1);
        assert!(t.is_empty());
        assert_eq!(t.subscriptions(), 0);
        t.check_invariants();
    }

    #[test]
    fn bad_names_are_refused() {
        let mut t = Topics::<u32>::new();
        assert_eq!(t.subscribe(1, ""), Err(TopicError::BadName));
        let long = "x".repeat(MAX_TOPIC_LEN + 1);
        assert_eq!(t.subscribe(1, &long), Err(TopicError::BadName));
        assert_eq!(t.subscribe(1, &long[1..]), Ok(true));
    }

    #[test]
    fn slots_are_reused() {
        let mut t = Topics::new();
        for round in 0..3u32 {
            for i in 0..100u32 {
                t.subscribe(i, &format!("t{}", i % 7)).unwrap();
                t.subscribe(i, &format!("r{round}")).unwrap();
            }
            t.check_invariants();
            for i in (0..100u32).rev() {
                t.remove_conn(i);
            }
            t.check_invariants();
            assert!(t.is_empty());
        }
        assert!(t.slots.len() <= 8, "{} slots", t.slots.len());
    }

    #[test]
    fn topics_of_lists_a_connections_subscriptions() {
        let mut t = Topics::new();
        t.subscribe(5, "x").unwrap();
        t.subscribe(5, "y").unwrap();
        let mut v: Vec<&str> = t.topics_of(5).collect();
        v.sort_unstable();
        assert_eq!(v, ["x", "y"]);
        assert!(t.is_subscribed(5, "x"));
        assert!(!t.is_subscribed(6, "x"));
    }
}
