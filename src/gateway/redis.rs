//! The Redis side of [`SharedBroker`]: a bridge of two threads with the
//! blocking `redis` client, so the reactor never waits for Redis.
//!
//! - The command thread runs [`Command::Publish`] (one Lua script:
//!   sequence, append to the stream, publish) and [`Command::Read`] (a
//!   script: the seq, raised to the caller's floor, and a stream range),
//!   and keeps presence (a sorted set per room, refreshed).
//! - The subscriber thread holds one connection in subscribe mode for the
//!   rooms with members here, reconnects with backoff, resubscribes.
//!
//! Both send [`Reply`]s on a channel and wake the reactor (a
//! [`crate::Remote`], through the `wake` function given to [`start`]); the
//! loop then drains them in `on_wake`. A thread rather than a non-blocking
//! client inside the loop: the loop stays free of Redis code and of an
//! async runtime, a slow or dead Redis can only delay these threads, and
//! the cost is one channel hop and one eventfd write per batch. Keys
//! (docs/gateway.md, "Redis"): `wsr:{ROOM}:seq`, `wsr:{ROOM}:log` (a
//! stream, entry id `SEQ-0`), channel `wsr:{ROOM}:ch`, `wsr:{ROOM}:who`.

use std::collections::HashMap;
use std::sync::mpsc::{
    channel, sync_channel, Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError,
};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::{Client, Connection, ErrorKind, Value};

use super::broker::HistoryConfig;
use super::shared::{decode, Command, Entry, ReadFor, ReadResult, Reply, SharedBroker};

/// Replies the loop has not taken yet, at most. A loop that falls behind
/// makes the bridge threads wait instead of queueing without bound; Redis
/// then buffers the subscription, and past its pub/sub output limit drops
/// the connection, after which the subscriber reconnects and the rooms are
/// filled in from their streams.
const REPLY_QUEUE: usize = 16 * 1024;

/// The bridge threads' side of the reply queue.
#[derive(Clone)]
struct ReplyTx {
    tx: SyncSender<Reply>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl ReplyTx {
    /// Queue `r`; when the queue is full, wake the loop first (some replies
    /// may not have been announced yet) and wait for room.
    fn send(&self, r: Reply) -> Result<(), ()> {
        match self.tx.try_send(r) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(r)) => {
                (self.wake)();
                self.tx.send(r).map_err(|_| ())
            }
            Err(TrySendError::Disconnected(_)) => Err(()),
        }
    }
}

/// Sequence, append, publish: KEYS seq, log; ARGV maxlen, ts, from, data,
/// channel, ttl ms, floor. Returns the seq.
const PUBLISH_LUA: &str = r#"
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[7])
if seq < floor then seq = floor end
seq = seq + 1
redis.call('SET', KEYS[1], seq)
local s = string.format('%d', seq)
local msg = s .. ' ' .. ARGV[2] .. ' ' .. string.len(ARGV[3]) .. ' ' .. ARGV[3] .. ARGV[4]
if tonumber(ARGV[1]) > 0 then
  redis.pcall('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], s .. '-0', 'm', msg)
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
redis.call('PUBLISH', ARGV[5], msg)
return seq
"#;

/// The seq (raised to ARGV floor first) and the entries after ARGV after:
/// KEYS seq, log; ARGV floor, after, count. Returns {seq, entries}.
const READ_LUA: &str = r#"
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if seq < floor then
  seq = floor
  redis.call('SET', KEYS[1], seq)
end
local entries = {}
if tonumber(ARGV[3]) > 0 then
  entries = redis.call('XRANGE', KEYS[2], string.format('%d', tonumber(ARGV[2]) + 1) .. '-0', '+', 'COUNT', ARGV[3])
end
return {seq, entries}
"#;

/// Presence entries live this long unless refreshed.
const PRESENCE_TTL_MS: u64 = 30_000;
/// Presence is refreshed this often.
const PRESENCE_REFRESH: Duration = Duration::from_secs(10);
/// How long the subscriber waits for a message before it looks at new
/// subscriptions.
const SUB_POLL: Duration = Duration::from_millis(20);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

fn key(room: &str, what: &str) -> String {
    // A room name holds no braces: `{room}` is the cluster hash tag, so
    // one room's keys and channel share a slot.
    format!("wsr:{{{room}}}:{what}")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Start a bridge to each Redis in `urls` (`redis://HOST:PORT[/DB]`;
/// rooms are spread over them by [`super::shared::shard_of`], so every
/// instance must list the same URLs in the same order) and return the
/// broker for the gateway. `wake` must wake the reactor (it is called from
/// the bridge threads after replies were queued). `instance` names this
/// gateway in presence entries. Fails only on a bad URL: an unreachable
/// Redis is retried in the background.
pub fn start(
    urls: &[String],
    history: HistoryConfig,
    instance: String,
    wake: Arc<dyn Fn() + Send + Sync>,
) -> Result<SharedBroker, String> {
    if urls.is_empty() {
        return Err("no Redis URL".into());
    }
    let clients = urls
        .iter()
        .map(|url| Client::open(url.as_str()).map_err(|e| format!("bad Redis URL {url:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let (tx, reply_rx) = sync_channel::<Reply>(REPLY_QUEUE);
    let reply_tx = ReplyTx {
        tx,
        wake: wake.clone(),
    };
    let mut txs = Vec::with_capacity(clients.len());
    for (shard, client) in clients.into_iter().enumerate() {
        let (cmd_tx, cmd_rx) = channel::<Command>();
        let (sub_tx, sub_rx) = channel::<Command>();
        let settings = Settings {
            maxlen: history.max_messages,
            ttl_ms: history.max_age_ms.max(1000),
            instance: instance.clone(),
        };
        {
            let (client, reply_tx, wake) = (client.clone(), reply_tx.clone(), wake.clone());
            std::thread::Builder::new()
                .name(format!("redis-sub-{shard}"))
                .spawn(move || subscriber(shard, client, sub_rx, reply_tx, wake))
                .map_err(|e| format!("cannot start a Redis subscriber thread: {e}"))?;
        }
        let (reply_tx, wake) = (reply_tx.clone(), wake.clone());
        std::thread::Builder::new()
            .name(format!("redis-cmd-{shard}"))
            .spawn(move || Commands::new(client, settings, reply_tx, sub_tx, wake).run(cmd_rx))
            .map_err(|e| format!("cannot start a Redis command thread: {e}"))?;
        txs.push(cmd_tx);
    }
    Ok(SharedBroker::sharded(history, txs, reply_rx))
}

struct Settings {
    maxlen: usize,
    ttl_ms: u64,
    instance: String,
}

/// The command connection, reconnected with backoff.
struct Link {
    client: Client,
    conn: Option<Connection>,
    retry_at: Instant,
    backoff: Duration,
}

impl Link {
    fn get(&mut self) -> Result<&mut Connection, String> {
        if self.conn.is_none() {
            if Instant::now() < self.retry_at {
                return Err("redis unavailable".into());
            }
            match self
                .client
                .get_connection_with_timeout(Duration::from_secs(1))
            {
                Ok(c) => {
                    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                    let _ = c.set_write_timeout(Some(Duration::from_secs(2)));
                    self.conn = Some(c);
                    self.backoff = BACKOFF_MIN;
                }
                Err(e) => {
                    self.retry_at = Instant::now() + self.backoff;
                    self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                    return Err(format!("redis unavailable: {e}"));
                }
            }
        }
        self.conn.as_mut().ok_or_else(|| "redis unavailable".into())
    }

    /// After an error: drop a connection that may be broken.
    fn failed(&mut self, e: &redis::RedisError) {
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_timeout()
            || e.is_unrecoverable_error()
        {
            self.conn = None;
            self.retry_at = Instant::now();
        }
    }
}

struct Commands {
    link: Link,
    settings: Settings,
    reply: ReplyTx,
    sub: Sender<Command>,
    wake: Arc<dyn Fn() + Send + Sync>,
    publish_sha: Option<String>,
    read_sha: Option<String>,
    /// Users present here per room, with how many rooms... per (room, user).
    present: HashMap<(String, String), ()>,
    refreshed: Instant,
    /// Sync reads that failed: retried until they succeed (the loop waits
    /// for them and asks for no other).
    retry: Vec<Command>,
}

impl Commands {
    fn new(
        client: Client,
        settings: Settings,
        reply: ReplyTx,
        sub: Sender<Command>,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> Self {
        Commands {
            link: Link {
                client,
                conn: None,
                retry_at: Instant::now(),
                backoff: BACKOFF_MIN,
            },
            settings,
            reply,
            sub,
            wake,
            publish_sha: None,
            read_sha: None,
            present: HashMap::new(),
            refreshed: Instant::now(),
            retry: Vec::new(),
        }
    }

    fn run(mut self, rx: Receiver<Command>) {
        loop {
            let wait = if self.retry.is_empty() {
                PRESENCE_REFRESH
            } else {
                self.link.backoff
            };
            let cmd = match rx.recv_timeout(wait) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut replied = false;
            if let Some(cmd) = cmd {
                replied |= self.one(cmd);
                // Everything queued meanwhile, then one wake.
                while let Ok(cmd) = rx.try_recv() {
                    replied |= self.one(cmd);
                }
            }
            if !self.retry.is_empty() && Instant::now() >= self.link.retry_at {
                for cmd in std::mem::take(&mut self.retry) {
                    replied |= self.one(cmd);
                }
            }
            if replied {
                (self.wake)();
            }
            if self.refreshed.elapsed() >= PRESENCE_REFRESH {
                self.refresh_presence();
            }
        }
    }

    /// Run one command; whether it queued a reply.
    fn one(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Subscribe { .. } | Command::Unsubscribe { .. } => {
                let _ = self.sub.send(cmd);
                false
            }
            Command::Presence {
                room,
                user,
                present,
            } => {
                let k = (room, user);
                let r = if present {
                    self.present.insert(k.clone(), ());
                    self.zadd(&k.0, &k.1)
                } else {
                    self.present.remove(&k);
                    self.zrem(&k.0, &k.1)
                };
                if let Err(e) = r {
                    log::debug!("redis presence: {e}");
                }
                false
            }
            Command::PresenceQuery { ticket, room } => {
                let result = self.who(&room);
                let _ = self.reply.send(Reply::Presence { ticket, result });
                true
            }
            Command::Publish {
                ticket,
                room,
                floor,
                entry,
            } => {
                let result = self.publish(&room, floor, &entry);
                let _ = self.reply.send(Reply::Published {
                    ticket,
                    room,
                    entry,
                    result,
                });
                true
            }
            Command::Read {
                room,
                after,
                count,
                floor,
                purpose,
            } => {
                let result = self.read(&room, after, count, floor);
                if result.is_err() && purpose == ReadFor::Sync {
                    // One per room (the earliest), so the list stays
                    // bounded by the rooms.
                    let mut after = after;
                    self.retry.retain(|c| match c {
                        Command::Read {
                            room: r, after: a, ..
                        } if *r == room => {
                            after = after.min(*a);
                            false
                        }
                        _ => true,
                    });
                    self.retry.push(Command::Read {
                        room,
                        after,
                        count,
                        floor,
                        purpose,
                    });
                    return false;
                }
                let _ = self.reply.send(Reply::Read {
                    room,
                    purpose,
                    result,
                });
                true
            }
        }
    }

    /// EVALSHA `script`, loading it first or again after NOSCRIPT (a
    /// restarted Redis has forgotten it).
    fn eval(&mut self, which: bool, keys: &[String], args: &[String]) -> Result<Value, String> {
        let script = if which { PUBLISH_LUA } else { READ_LUA };
        for attempt in 0..2 {
            let sha = if which {
                &self.publish_sha
            } else {
                &self.read_sha
            }
            .clone();
            let conn = self.link.get()?;
            let sha = match sha {
                Some(s) => s,
                None => {
                    let r: Result<String, _> =
                        redis::cmd("SCRIPT").arg("LOAD").arg(script).query(conn);
                    match r {
                        Ok(s) => {
                            if which {
                                self.publish_sha = Some(s.clone());
                            } else {
                                self.read_sha = Some(s.clone());
                            }
                            s
                        }
                        Err(e) => {
                            self.link.failed(&e);
                            return Err(format!("redis: {e}"));
                        }
                    }
                }
            };
            let conn = self.link.get()?;
            let mut c = redis::cmd("EVALSHA");
            c.arg(&sha).arg(keys.len()).arg(keys).arg(args);
            match c.query::<Value>(conn) {
                Ok(v) => return Ok(v),
                Err(e) if e.kind() == ErrorKind::NoScriptError && attempt == 0 => {
                    if which {
                        self.publish_sha = None;
                    } else {
                        self.read_sha = None;
                    }
                }
                Err(e) => {
                    self.link.failed(&e);
                    return Err(format!("redis: {e}"));
                }
            }
        }
        Err("redis: script not loaded".into())
    }

    fn publish(&mut self, room: &str, floor: u64, e: &Entry) -> Result<u64, String> {
        let keys = [key(room, "seq"), key(room, "log")];
        let args = [
            self.settings.maxlen.to_string(),
            e.ts.to_string(),
            e.from.clone(),
            e.data.clone(),
            key(room, "ch"),
            self.settings.ttl_ms.to_string(),
            floor.to_string(),
        ];
        match self.eval(true, &keys, &args)? {
            Value::Int(n) if n > 0 => Ok(n as u64),
            other => Err(format!("redis: unexpected publish answer {other:?}")),
        }
    }

    fn read(
        &mut self,
        room: &str,
        after: u64,
        count: usize,
        floor: u64,
    ) -> Result<ReadResult, String> {
        let keys = [key(room, "seq"), key(room, "log")];
        let args = [floor.to_string(), after.to_string(), count.to_string()];
        let v = self.eval(false, &keys, &args)?;
        let (last_seq, entries, bad) = parse_read(&v).ok_or("redis: unexpected read answer")?;
        for _ in 0..bad {
            let _ = self.reply.send(Reply::Bad);
        }
        let truncated = count > 0 && entries.len() + bad >= count;
        Ok(ReadResult {
            last_seq,
            entries,
            truncated,
        })
    }

    fn member(&self, user: &str) -> String {
        format!("{}|{user}", self.settings.instance)
    }

    fn zadd(&mut self, room: &str, user: &str) -> Result<(), String> {
        let member = self.member(user);
        let conn = self.link.get()?;
        let r: Result<(), _> = redis::pipe()
            .cmd("ZADD")
            .arg(key(room, "who"))
            .arg(now_ms() + PRESENCE_TTL_MS)
            .arg(member)
            .ignore()
            // Entries of instances that stopped refreshing (crashed).
            .cmd("ZREMRANGEBYSCORE")
            .arg(key(room, "who"))
            .arg("-inf")
            .arg(now_ms())
            .ignore()
            .cmd("PEXPIRE")
            .arg(key(room, "who"))
            .arg(PRESENCE_TTL_MS)
            .ignore()
            .query(conn);
        r.map_err(|e| {
            self.link.failed(&e);
            e.to_string()
        })
    }

    fn zrem(&mut self, room: &str, user: &str) -> Result<(), String> {
        let member = self.member(user);
        let conn = self.link.get()?;
        let r: Result<(), _> = redis::cmd("ZREM")
            .arg(key(room, "who"))
            .arg(member)
            .query(conn);
        r.map_err(|e| {
            self.link.failed(&e);
            e.to_string()
        })
    }

    /// The users of live entries of the room's presence set.
    fn who(&mut self, room: &str) -> Result<Vec<String>, String> {
        let conn = self.link.get()?;
        let r: Result<Vec<Vec<u8>>, _> = redis::cmd("ZRANGEBYSCORE")
            .arg(key(room, "who"))
            .arg(now_ms())
            .arg("+inf")
            .query(conn);
        let members = r.map_err(|e| {
            self.link.failed(&e);
            format!("redis: {e}")
        })?;
        Ok(members.iter().filter_map(|m| presence_user(m)).collect())
    }

    fn refresh_presence(&mut self) {
        self.refreshed = Instant::now();
        let all: Vec<(String, String)> = self.present.keys().cloned().collect();
        for (room, user) in all {
            if let Err(e) = self.zadd(&room, &user) {
                log::debug!("redis presence refresh: {e}");
                return;
            }
        }
    }
}

/// The user of a presence entry `INSTANCE|USER` (anything else: `None`).
fn presence_user(member: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(member).ok()?;
    let (_, user) = s.split_once('|')?;
    (!user.is_empty()).then(|| user.to_owned())
}

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// The seq of a stream entry id `SEQ-0`.
fn id_seq(id: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(id).ok()?;
    let (ms, n) = s.split_once('-')?;
    if n != "0" {
        return None;
    }
    ms.parse().ok()
}

/// One stream entry `[id, [field, value, ...]]` as written by the publish
/// script, or `None`.
fn parse_entry(v: &Value) -> Option<Entry> {
    let Value::Array(parts) = v else { return None };
    let [id, fields] = parts.as_slice() else {
        return None;
    };
    let seq = id_seq(bytes(id)?)?;
    let Value::Array(fields) = fields else {
        return None;
    };
    let mut msg = None;
    for pair in fields.chunks(2) {
        if let [k, v] = pair {
            if bytes(k)? == b"m" {
                msg = Some(bytes(v)?);
            }
        }
    }
    let e = decode(msg?).ok()?;
    // The id and the message must agree.
    (e.seq == seq).then_some(e)
}

/// The read script's answer: (seq, good entries in order, bad entries).
fn parse_read(v: &Value) -> Option<(u64, Vec<Entry>, usize)> {
    let Value::Array(parts) = v else { return None };
    let [seq, entries] = parts.as_slice() else {
        return None;
    };
    let Value::Int(seq) = seq else { return None };
    let seq = u64::try_from(*seq).ok()?;
    let Value::Array(raw) = entries else {
        return None;
    };
    let mut good = Vec::with_capacity(raw.len());
    let mut bad = 0;
    let mut last = 0;
    for e in raw {
        match parse_entry(e) {
            // In increasing order only (XRANGE answers so).
            Some(e) if e.seq > last => {
                last = e.seq;
                good.push(e);
            }
            _ => bad += 1,
        }
    }
    Some((seq, good, bad))
}

/// The subscriber thread: one connection in subscribe mode.
fn subscriber(
    shard: usize,
    client: Client,
    rx: Receiver<Command>,
    reply: ReplyTx,
    wake: Arc<dyn Fn() + Send + Sync>,
) {
    // channel -> (room, generation)
    let mut want: HashMap<String, (String, u64)> = HashMap::new();
    let mut backoff = BACKOFF_MIN;
    let mut down = false;
    let apply = |want: &mut HashMap<String, (String, u64)>, cmd: Command| match cmd {
        Command::Subscribe { room, generation } => {
            want.insert(key(&room, "ch"), (room, generation));
        }
        Command::Unsubscribe { room } => {
            want.remove(&key(&room, "ch"));
        }
        _ => {}
    };
    loop {
        let mut conn = match client.get_connection_with_timeout(Duration::from_secs(1)) {
            Ok(c) => c,
            Err(e) => {
                if !down {
                    log::warn!("redis: cannot connect ({e}); retrying with backoff");
                    down = true;
                    let _ = reply.send(Reply::Down { shard });
                    wake();
                }
                let until = Instant::now() + backoff;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                loop {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match rx.recv_timeout(left) {
                        Ok(cmd) => apply(&mut want, cmd),
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
                continue;
            }
        };
        let mut ps = conn.as_pubsub();
        if ps.set_read_timeout(Some(SUB_POLL)).is_err() {
            continue;
        }
        let mut subscribed: HashMap<String, u64> = HashMap::new();
        let mut broken = false;
        loop {
            // Bring the subscriptions in line with `want`.
            loop {
                match rx.try_recv() {
                    Ok(cmd) => apply(&mut want, cmd),
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
                }
            }
            let gone: Vec<String> = subscribed
                .keys()
                .filter(|c| !want.contains_key(*c))
                .cloned()
                .collect();
            for ch in gone {
                if ps.unsubscribe(&ch).is_err() {
                    broken = true;
                    break;
                }
                subscribed.remove(&ch);
            }
            let mut woke = false;
            for (ch, (room, generation)) in &want {
                if broken {
                    break;
                }
                if subscribed.get(ch) == Some(generation) {
                    continue;
                }
                if ps.subscribe(ch).is_err() {
                    broken = true;
                    break;
                }
                subscribed.insert(ch.clone(), *generation);
                let _ = reply.send(Reply::Subscribed {
                    room: room.clone(),
                    generation: *generation,
                });
                woke = true;
            }
            if !broken && down {
                log::info!(
                    "redis: connected again; {} rooms resubscribed",
                    subscribed.len()
                );
                down = false;
                backoff = BACKOFF_MIN;
                let _ = reply.send(Reply::Up { shard });
                woke = true;
            }
            if woke {
                wake();
            }
            if broken {
                break;
            }
            match ps.get_message() {
                Ok(msg) => {
                    let ch = msg.get_channel_name();
                    let Some((room, _)) = want.get(ch) else {
                        continue;
                    };
                    let r = match decode(msg.get_payload_bytes()) {
                        Ok(entry) => Reply::Message {
                            room: room.clone(),
                            entry,
                        },
                        Err(e) => {
                            log::debug!("redis: malformed message on {ch}: {e:?}");
                            Reply::Bad
                        }
                    };
                    let _ = reply.send(r);
                    wake();
                }
                Err(e) if e.is_timeout() => {}
                Err(e) => {
                    log::warn!("redis: subscription connection lost: {e}");
                    broken = true;
                    break;
                }
            }
        }
        if broken && !down {
            down = true;
            let _ = reply.send(Reply::Down { shard });
            wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_full_reply_queue_wakes_the_loop_and_waits_for_room() {
        let woken = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = sync_channel::<Reply>(1);
        let w = woken.clone();
        let reply = ReplyTx {
            tx,
            wake: Arc::new(move || {
                w.fetch_add(1, Ordering::SeqCst);
            }),
        };
        reply.send(Reply::Bad).unwrap();
        assert_eq!(woken.load(Ordering::SeqCst), 0, "room left: no wake");
        let t = std::thread::spawn(move || reply.send(Reply::Bad));
        while woken.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        // The sender waits until the loop takes a reply, then gets in.
        assert!(rx.recv().is_ok());
        assert!(t.join().unwrap().is_ok());
        assert!(rx.recv().is_ok());
        assert!(rx.try_recv().is_err(), "no more than was sent");
    }

    fn bulk(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    #[test]
    fn stream_entries_that_are_not_ours_are_dropped() {
        let good = |seq: u64| {
            Value::Array(vec![
                bulk(format!("{seq}-0").as_bytes()),
                Value::Array(vec![
                    bulk(b"m"),
                    bulk(format!("{seq} 5 1 u{seq}").as_bytes()),
                ]),
            ])
        };
        let entries = vec![
            good(3),
            Value::Int(7),
            Value::Array(vec![
                bulk(b"4-1"),
                Value::Array(vec![bulk(b"m"), bulk(b"4 5 1 u4")]),
            ]),
            Value::Array(vec![
                bulk(b"5-0"),
                Value::Array(vec![bulk(b"m"), bulk(b"6 5 1 u6")]),
            ]),
            Value::Array(vec![
                bulk(b"6-0"),
                Value::Array(vec![bulk(b"x"), bulk(b"6 5 1 u6")]),
            ]),
            Value::Array(vec![bulk(b"7-0"), Value::Array(vec![bulk(b"m")])]),
            Value::Array(vec![bulk(b"zz"), Value::Nil]),
            good(8),
            good(2),
        ];
        let (seq, got, bad) =
            parse_read(&Value::Array(vec![Value::Int(9), Value::Array(entries)])).unwrap();
        assert_eq!(seq, 9);
        assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 8]);
        assert_eq!(bad, 7);
        assert!(parse_read(&Value::Nil).is_none());
        assert!(parse_read(&Value::Array(vec![Value::Int(-1), Value::Array(vec![])])).is_none());
        assert!(parse_read(&Value::Array(vec![Value::Int(1)])).is_none());
    }
}
