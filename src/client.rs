//! Keeping a client connected: a reconnect policy and a helper that applies
//! it through the reactor.
//!
//! - [`ReconnectPolicy`] is the plain configuration (exponential backoff with
//!   jitter, and when a connection counts as having "stayed up").
//! - [`Backoff`] is the policy's state, sans-IO like the protocol core: the
//!   caller passes the time and the randomness in and gets delays out, so it
//!   is tested without a clock or a socket.
//! - [`Reconnector`] keeps one client connection to one URL open through a
//!   [`Reactor`](crate::Reactor): the handler forwards a few callbacks to it
//!   and it schedules [`Control::connect`] after each backoff delay.
//!
//! Heartbeats are the reactor's, for client and server connections alike
//! ([`ServerConfig::ping_interval`](crate::ServerConfig::ping_interval),
//! [`ServerConfig::pong_timeout`](crate::ServerConfig::pong_timeout)): a
//! connection that misses its pong deadline ends with
//! [`Handler::on_close`](crate::Handler::on_close) (code 1001) like any
//! other, and the [`Reconnector`] reconnects it.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::time::{Duration, Instant};

use crate::handshake::client::{check_header, check_protocol};
use crate::net::{ConnId, Control, Remote};

/// What a client sends in its opening handshake besides the URL: the
/// subprotocols it offers and extra headers, e.g. `Authorization`. Used by
/// [`Control::connect_with`] and [`Reconnector::with_options`].
///
/// ```
/// use wsreactor::client::ConnectOptions;
///
/// let options = ConnectOptions::default()
///     .protocol("chat.v2")
///     .bearer("s3cret")
///     .header("X-Request-Id", "42");
/// assert!(options.check().is_ok());
/// assert_eq!(options.headers[0], ("Authorization".into(), "Bearer s3cret".into()));
/// // What would split the request is refused before anything is sent.
/// assert!(ConnectOptions::default().header("X", "a\r\nHost: evil").check().is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Subprotocols offered in `Sec-WebSocket-Protocol`, in order of
    /// preference; the server may select one of them or none.
    pub protocols: Vec<String>,
    /// Headers sent after the handshake's own, in order.
    pub headers: Vec<(String, String)>,
}

impl ConnectOptions {
    /// Offer one more subprotocol.
    #[must_use]
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// Send one more header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Send `Authorization: Bearer <token>` (RFC 6750).
    #[must_use]
    pub fn bearer(self, token: &str) -> Self {
        self.header("Authorization", format!("Bearer {token}"))
    }

    /// Check every header and subprotocol (see
    /// [`check_header`]).
    ///
    /// # Errors
    /// `InvalidInput`, naming the field and what is wrong with it.
    pub fn check(&self) -> io::Result<()> {
        let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
        for p in &self.protocols {
            check_protocol(p).map_err(|e| invalid(format!("subprotocol {p:?}: {e}")))?;
        }
        for (name, value) in &self.headers {
            check_header(name, value).map_err(|e| invalid(format!("header {name:?}: {e}")))?;
        }
        Ok(())
    }
}

/// How a client waits between connection attempts: exponential backoff with
/// jitter, reset once a connection has stayed up.
///
/// The delay before attempt `n` (counting from 0 after the last reset) is
/// drawn around `base(n) = min(initial_delay × factor^n, max_delay)`, as
/// [`jitter`](Self::jitter) says. With the defaults: about 1 s, 2 s, 4 s, …,
/// 32 s, then 60 s for every further attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconnectPolicy {
    /// Base delay of the first retry. Default 1 s (the seed's starting
    /// interval): long enough not to hammer a server that is restarting,
    /// short enough that a blip goes unnoticed.
    pub initial_delay: Duration,
    /// Growth of the base delay per failed attempt. Default 2 (the seed
    /// names 2, and 1.5 as an alternative). Values below 1 (or not finite)
    /// act as 1, a constant delay.
    pub factor: f64,
    /// Largest base delay. Default 60 s (the seed's cap): a server that is
    /// down for long is still retried every minute or so, while thousands of
    /// clients retrying it cost it little.
    pub max_delay: Duration,
    /// How the delay is randomized around the base. Default
    /// [`Jitter::Equal`] (why: see there).
    pub jitter: Jitter,
    /// A connection that stayed open at least this long resets the backoff:
    /// the next retry waits about `initial_delay` again. Default 30 s (one
    /// heartbeat interval of the seed): a server that accepts and then drops
    /// connections at once (crash loop, rejected credentials) keeps the
    /// backoff growing instead of being hit every second.
    pub reset_after: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_secs(1),
            factor: 2.0,
            max_delay: Duration::from_secs(60),
            jitter: Jitter::Equal,
            reset_after: Duration::from_secs(30),
        }
    }
}

/// How a backoff delay is randomized around its base `b`.
///
/// Jitter matters when many clients lose their server at the same moment
/// (a restart, a network partition): without it they all come back at the
/// same instants and the recovering server sees the whole herd at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly `b`. Deterministic; for tests and single clients.
    None,
    /// Uniform in `[0, b]` ("full jitter"). Spreads a herd the most and, among
    /// many clients contending for one server, costs the fewest attempts
    /// overall, but any one retry may come almost at once, even late in the
    /// sequence.
    Full,
    /// Uniform in `[b/2, b]` ("equal jitter"), the default. A herd is still
    /// spread over half the delay, while the delay never drops below half
    /// its base: the documented schedule (1 s, 2 s, …, 60 s) stays a real
    /// lower bound (0.5 s, 1 s, …, 30 s), so a client facing a dead server
    /// backs off steadily instead of occasionally retrying immediately.
    Equal,
}

/// The state of a [`ReconnectPolicy`]: which attempt comes next and since
/// when the current connection is up. Sans-IO: time and randomness are
/// passed in.
///
/// ```
/// use std::time::{Duration, Instant};
/// use wsreactor::client::{Backoff, Jitter, ReconnectPolicy};
///
/// let mut b = Backoff::new(ReconnectPolicy { jitter: Jitter::None, ..Default::default() });
/// assert_eq!(b.next_delay(0), Duration::from_secs(1));
/// assert_eq!(b.next_delay(0), Duration::from_secs(2));
/// assert_eq!(b.next_delay(0), Duration::from_secs(4));
/// // A connection that stays up for `reset_after` starts the sequence over.
/// let t0 = Instant::now();
/// b.on_connected(t0);
/// b.on_disconnected(t0 + Duration::from_secs(31));
/// assert_eq!(b.next_delay(0), Duration::from_secs(1));
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: ReconnectPolicy,
    /// Delays handed out since the last reset.
    attempt: u32,
    /// When the current connection opened, while one is open.
    connected_at: Option<Instant>,
}

impl Backoff {
    /// A backoff at its first attempt.
    pub fn new(policy: ReconnectPolicy) -> Self {
        Self {
            policy,
            attempt: 0,
            connected_at: None,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &ReconnectPolicy {
        &self.policy
    }

    /// Delays handed out since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The delay before attempt `attempt`, before jitter:
    /// `min(initial_delay × factor^attempt, max_delay)`.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let p = &self.policy;
        let factor = if p.factor.is_finite() && p.factor > 1.0 {
            p.factor
        } else {
            1.0
        };
        let cap = p.max_delay.as_secs_f64();
        // powi saturates to infinity, which `min` turns into the cap.
        let exp = i32::try_from(attempt).unwrap_or(i32::MAX);
        let secs = (p.initial_delay.as_secs_f64() * factor.powi(exp)).min(cap);
        Duration::try_from_secs_f64(secs).unwrap_or(p.max_delay)
    }

    /// The delay to wait before the next connection attempt; advances the
    /// sequence. `random` is any uniformly random 64-bit value (it picks the
    /// jitter; ignored with [`Jitter::None`]).
    pub fn next_delay(&mut self, random: u64) -> Duration {
        let base = self.base_delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        match self.policy.jitter {
            Jitter::None => base,
            Jitter::Full => scale(base, random),
            Jitter::Equal => {
                let half = base / 2;
                half + scale(base - half, random)
            }
        }
    }

    /// A connection opened at `now`.
    pub fn on_connected(&mut self, now: Instant) {
        self.connected_at = Some(now);
    }

    /// The connection ended at `now` (or an attempt failed). If it had stayed
    /// up for [`ReconnectPolicy::reset_after`], the sequence starts over.
    pub fn on_disconnected(&mut self, now: Instant) {
        if let Some(since) = self.connected_at.take() {
            if now.saturating_duration_since(since) >= self.policy.reset_after {
                self.reset();
            }
        }
    }

    /// Start the sequence over: the next delay is about `initial_delay`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// `d × random / 2^64`, i.e. uniform in `[0, d]` for uniform `random`
/// (to the nanosecond; the upper end is reached within a nanosecond).
fn scale(d: Duration, random: u64) -> Duration {
    let nanos = d.as_nanos();
    // `nanos` < 2^64 for any delay under ~584 years; larger ones are capped.
    let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
    let scaled = (u128::from(nanos) * (u128::from(random) + 1)) >> 64;
    Duration::from_nanos(scaled as u64)
}

/// A small non-cryptographic generator for jitter (SplitMix64), seeded from
/// the per-process random keys of std's `RandomState` so that clients
/// started together draw different delays. Jitter needs spread, not secrecy.
#[derive(Debug, Clone)]
struct JitterRng(u64);

impl JitterRng {
    fn from_os() -> Self {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0x6a09_e667_f3bc_c908);
        Self(h.finish())
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Where a [`Reconnector`] is.
///
/// ```text
///         start()           on_wake               on_timer, due
///  Idle ──────────► Due(d) ─────────► Waiting ────────────────► Connecting(id)
///                    ▲      timer d    │    ▲                     │        │
///                    │                 └────┘                     │        │ on_open
///                    │          connect() refused at once:        │        ▼
///                    │          timer for the next delay          │     Open(id)
///                    ├─────────── on_connect_failed ──────────────┘        │
///                    └─────────── on_close ────────────────────────────────┘
///                     (d: the next backoff delay; after start() d = 0 and
///                      on_wake connects at once)
///
///  reconnect(ctl): Connecting / Open ──► Waiting (next delay; no wake needed)
///  stop(): Stopped from anywhere; nothing is scheduled any more
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconnectState {
    /// Not started.
    Idle,
    /// An attempt is due after this delay; waiting for a [`Control`] (the
    /// next [`Reconnector::on_wake`]) to set the timer.
    Due(Duration),
    /// The timer is set; the attempt starts at this instant.
    Waiting(Instant),
    /// TCP connect or opening handshake in progress.
    Connecting(ConnId),
    /// The connection is open.
    Open(ConnId),
    /// [`Reconnector::stop`] was called.
    Stopped,
}

/// Keeps one client connection to one URL open: after the connection ends
/// or an attempt fails, it connects again after the [`Backoff`] delay.
///
/// [`Handler::on_close`](crate::Handler::on_close) and
/// [`Handler::on_connect_failed`](crate::Handler::on_connect_failed) set the
/// backoff timer through their [`Control`], and
/// [`Handler::on_timer`](crate::Handler::on_timer) connects. The first
/// attempt is started from another thread or before the loop runs by
/// [`Reconnector::start`], which wakes the loop through its [`Remote`]
/// ([`Handler::on_wake`](crate::Handler::on_wake) then connects). The
/// handler forwards these callbacks; each forwarding method says whether the
/// event was the reconnector's.
///
/// ```no_run
/// use wsreactor::client::{ReconnectPolicy, Reconnector};
/// use wsreactor::{ConnId, Control, Ctx, Handler, Message, Reactor, ServerConfig};
///
/// const RECONNECT: u64 = 1;
///
/// struct App {
///     link: Reconnector,
/// }
///
/// impl Handler for App {
///     fn on_open(&mut self, ctx: &mut Ctx<'_>) {
///         if self.link.on_open(ctx.id()) {
///             let _ = ctx.send_text("hello again");
///         }
///     }
///     fn on_message(&mut self, _ctx: &mut Ctx<'_>, msg: Message<'_>) {
///         println!("{msg:?}");
///     }
///     fn on_close(&mut self, ctx: &mut Ctx<'_>, _code: u16, _reason: &str) {
///         let id = ctx.id();
///         self.link.on_close(ctx.control(), id);
///     }
///     fn on_connect_failed(&mut self, ctl: &mut Control<'_>, id: ConnId, reason: &str) {
///         if self.link.on_connect_failed(ctl, id) {
///             eprintln!("connect failed: {reason}");
///         }
///     }
///     fn on_wake(&mut self, ctl: &mut Control<'_>) {
///         self.link.on_wake(ctl);
///     }
///     fn on_timer(&mut self, ctl: &mut Control<'_>, token: u64) {
///         if let Some(Err(e)) = self.link.on_timer(ctl, token) {
///             eprintln!("connect failed: {e}");
///         }
///     }
/// }
///
/// let mut reactor = Reactor::new(ServerConfig::default(), App {
///     link: Reconnector::new("ws://127.0.0.1:9001/", ReconnectPolicy::default(), RECONNECT),
/// })?;
/// let remote = reactor.remote();
/// // The first attempt is made at once, from the first on_wake.
/// reactor.handler_mut().link.start(remote);
/// reactor.run()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Reconnector {
    url: String,
    options: ConnectOptions,
    backoff: Backoff,
    token: u64,
    remote: Option<Remote>,
    rng: JitterRng,
    state: ReconnectState,
}

impl Reconnector {
    /// A reconnector for `url` (`ws://host[:port][/path]`). `token` is the
    /// [`Control::set_timer`] token it uses: pick one the application's own
    /// timers do not. Nothing happens until [`start`](Self::start).
    pub fn new(url: impl Into<String>, policy: ReconnectPolicy, token: u64) -> Self {
        Self {
            url: url.into(),
            options: ConnectOptions::default(),
            backoff: Backoff::new(policy),
            token,
            remote: None,
            rng: JitterRng::from_os(),
            state: ReconnectState::Idle,
        }
    }

    /// Connect with these subprotocols and headers (see
    /// [`Control::connect_with`]).
    #[must_use]
    pub fn with_options(mut self, options: ConnectOptions) -> Self {
        self.options = options;
        self
    }

    /// The URL connected to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where the reconnector is.
    pub fn state(&self) -> ReconnectState {
        self.state
    }

    /// The backoff state.
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// The open connection, if any.
    pub fn connection(&self) -> Option<ConnId> {
        match self.state {
            ReconnectState::Open(id) => Some(id),
            _ => None,
        }
    }

    /// Make the first attempt at once (from the next
    /// [`on_wake`](Self::on_wake), which this triggers through `remote`), or
    /// start again after [`stop`](Self::stop). `remote` is the reactor's
    /// ([`Reactor::remote`](crate::Reactor::remote)); later delays are
    /// scheduled through it too.
    pub fn start(&mut self, remote: Remote) {
        remote.wake();
        self.remote = Some(remote);
        if matches!(self.state, ReconnectState::Idle | ReconnectState::Stopped) {
            self.state = ReconnectState::Due(Duration::ZERO);
        }
    }

    /// Connect no more. A connection that is open stays open (close it with
    /// [`Control::close`] if it should end); a set timer is ignored.
    pub fn stop(&mut self) {
        self.state = ReconnectState::Stopped;
    }

    /// Forward [`Handler::on_open`](crate::Handler::on_open). `true` if `id`
    /// is the reconnector's connection.
    pub fn on_open(&mut self, id: ConnId) -> bool {
        if self.state != ReconnectState::Connecting(id) {
            return false;
        }
        self.state = ReconnectState::Open(id);
        self.backoff.on_connected(Instant::now());
        log::debug!("{}: connected", self.url);
        true
    }

    /// Forward [`Handler::on_close`](crate::Handler::on_close). `true` if
    /// `id` was the reconnector's connection; the next attempt is then
    /// scheduled.
    pub fn on_close(&mut self, ctl: &mut Control<'_>, id: ConnId) -> bool {
        match self.state {
            ReconnectState::Open(cur) | ReconnectState::Connecting(cur) if cur == id => {
                self.backoff.on_disconnected(Instant::now());
                let delay = self.backoff.next_delay(self.rng.next_u64());
                log::info!("{}: reconnecting in {delay:.1?}", self.url);
                self.schedule(ctl, delay);
                true
            }
            _ => false,
        }
    }

    /// Forward
    /// [`Handler::on_connect_failed`](crate::Handler::on_connect_failed).
    /// `true` if `id` was the reconnector's attempt; the next one is then
    /// scheduled.
    pub fn on_connect_failed(&mut self, ctl: &mut Control<'_>, id: ConnId) -> bool {
        self.on_close(ctl, id)
    }

    /// Forward [`Handler::on_wake`](crate::Handler::on_wake): sets the timer
    /// of a due attempt, or connects at once when no delay is due.
    pub fn on_wake(&mut self, ctl: &mut Control<'_>) {
        if let ReconnectState::Due(delay) = self.state {
            if delay.is_zero() {
                if let Err(e) = self.connect(ctl) {
                    log::warn!("{}: {e}", self.url);
                }
            } else {
                self.schedule(ctl, delay);
            }
        }
    }

    /// Forward [`Handler::on_timer`](crate::Handler::on_timer). `None` if the
    /// timer is not the reconnector's, or came before the attempt is due (it
    /// then sets itself again for the rest); `Some(Ok(id))` when an
    /// attempt started; `Some(Err(e))` when it could not even start (a name
    /// that does not resolve, no socket): the next attempt is then already
    /// scheduled.
    pub fn on_timer(&mut self, ctl: &mut Control<'_>, token: u64) -> Option<io::Result<ConnId>> {
        if token != self.token {
            return None;
        }
        let ReconnectState::Waiting(due) = self.state else {
            return None;
        };
        // The timer is only a wake-up: the reactor's clock has millisecond
        // ticks, and a timer set before a stop() + start() may still be
        // pending (timers cannot be cancelled). Early: wait for the rest.
        let now = Instant::now();
        if now < due {
            ctl.set_timer(due - now, self.token);
            return None;
        }
        Some(self.connect(ctl))
    }

    /// Give up the current connection or attempt and schedule the next one
    /// now, with `ctl` at hand (no wake needed). For an application that
    /// fails the connection itself, e.g. when a pong is overdue: it closes
    /// the connection with [`Control::close`] and calls this; the
    /// connection's later `on_close` is then not the reconnector's.
    pub fn reconnect(&mut self, ctl: &mut Control<'_>) {
        if matches!(
            self.state,
            ReconnectState::Open(_) | ReconnectState::Connecting(_)
        ) {
            self.backoff.on_disconnected(Instant::now());
            let delay = self.backoff.next_delay(self.rng.next_u64());
            log::info!("{}: reconnecting in {delay:.1?}", self.url);
            self.schedule(ctl, delay);
        }
    }

    fn schedule(&mut self, ctl: &mut Control<'_>, delay: Duration) {
        self.state = ReconnectState::Waiting(Instant::now() + delay);
        ctl.set_timer(delay, self.token);
    }

    /// Start an attempt; when it cannot even start, schedule the next one.
    fn connect(&mut self, ctl: &mut Control<'_>) -> io::Result<ConnId> {
        match ctl.connect_with(&self.url, &self.options) {
            Ok(id) => {
                self.state = ReconnectState::Connecting(id);
                Ok(id)
            }
            Err(e) => {
                let delay = self.backoff.next_delay(self.rng.next_u64());
                log::info!("{}: {e}; retrying in {delay:.1?}", self.url);
                self.schedule(ctl, delay);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: Jitter) -> ReconnectPolicy {
        ReconnectPolicy {
            jitter,
            ..ReconnectPolicy::default()
        }
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let p = ReconnectPolicy::default();
        assert_eq!(p.initial_delay, secs(1.0));
        assert_eq!(p.factor, 2.0);
        assert_eq!(p.max_delay, secs(60.0));
        assert_eq!(p.jitter, Jitter::Equal);
        assert_eq!(p.reset_after, secs(30.0));
    }

    #[test]
    fn sequence_doubles_then_caps() {
        let mut b = Backoff::new(policy(Jitter::None));
        let got: Vec<Duration> = (0..10).map(|_| b.next_delay(u64::MAX)).collect();
        let want: Vec<Duration> = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0, 60.0]
            .into_iter()
            .map(secs)
            .collect();
        assert_eq!(got, want);
        assert_eq!(b.attempt(), 10);
    }

    #[test]
    fn cap_holds_for_huge_attempt_counts() {
        let b = Backoff::new(policy(Jitter::None));
        for n in [63, 64, 1000, 100_000, u32::MAX] {
            assert_eq!(b.base_delay(n), secs(60.0), "attempt {n}");
        }
        let mut b = Backoff::new(policy(Jitter::None));
        b.attempt = u32::MAX;
        assert_eq!(b.next_delay(0), secs(60.0));
        assert_eq!(b.attempt(), u32::MAX);
    }

    #[test]
    fn factor_one_and_one_and_a_half() {
        let mut b = Backoff::new(ReconnectPolicy {
            factor: 1.5,
            max_delay: secs(5.0),
            ..policy(Jitter::None)
        });
        let got: Vec<Duration> = (0..6).map(|_| b.next_delay(0)).collect();
        let want: Vec<Duration> = [1.0, 1.5, 2.25, 3.375, 5.0, 5.0]
            .into_iter()
            .map(secs)
            .collect();
        assert_eq!(got, want);
        for factor in [1.0, 0.5, 0.0, -3.0, f64::NAN, f64::INFINITY] {
            let mut b = Backoff::new(ReconnectPolicy {
                factor,
                ..policy(Jitter::None)
            });
            for _ in 0..5 {
                assert_eq!(b.next_delay(0), secs(1.0), "factor {factor}");
            }
        }
    }

    #[test]
    fn full_jitter_spans_zero_to_base() {
        let mut b = Backoff::new(policy(Jitter::Full));
        assert_eq!(b.next_delay(0), Duration::ZERO);
        assert_eq!(b.next_delay(u64::MAX), secs(2.0));
        assert_eq!(b.next_delay(1 << 63), secs(2.0));
    }

    #[test]
    fn equal_jitter_spans_half_to_base() {
        let mut b = Backoff::new(policy(Jitter::Equal));
        assert_eq!(b.next_delay(0), secs(0.5));
        assert_eq!(b.next_delay(u64::MAX), secs(2.0));
        assert_eq!(b.next_delay(1 << 63), secs(3.0));
    }

    #[test]
    fn jitter_stays_in_bounds_for_any_random_value() {
        let mut rng = JitterRng(42);
        for jitter in [Jitter::Full, Jitter::Equal] {
            let mut b = Backoff::new(policy(jitter));
            for n in 0..2000u32 {
                let base = b.base_delay(b.attempt());
                let lo = if jitter == Jitter::Equal {
                    base / 2
                } else {
                    Duration::ZERO
                };
                let d = b.next_delay(rng.next_u64());
                assert!(
                    d >= lo && d <= base,
                    "{jitter:?} #{n}: {d:?} not in [{lo:?}, {base:?}]"
                );
                if n % 10 == 9 {
                    b.reset();
                }
            }
        }
    }

    #[test]
    fn jitter_actually_varies() {
        let mut rng = JitterRng::from_os();
        let mut b = Backoff::new(policy(Jitter::Full));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            b.reset();
            seen.insert(b.next_delay(rng.next_u64()));
        }
        assert!(seen.len() > 40, "only {} distinct delays", seen.len());
    }

    #[test]
    fn reset_after_a_connection_that_stayed_up() {
        let t0 = Instant::now();
        let mut b = Backoff::new(policy(Jitter::None));
        for _ in 0..4 {
            b.next_delay(0);
        }
        // Up for less than reset_after: the sequence goes on.
        b.on_connected(t0);
        b.on_disconnected(t0 + secs(29.9));
        assert_eq!(b.next_delay(0), secs(16.0));
        // Up for exactly reset_after: back to the start.
        b.on_connected(t0 + secs(40.0));
        b.on_disconnected(t0 + secs(70.0));
        assert_eq!(b.next_delay(0), secs(1.0));
        assert_eq!(b.next_delay(0), secs(2.0));
    }

    #[test]
    fn failed_attempts_without_a_connection_do_not_reset() {
        let t0 = Instant::now();
        let mut b = Backoff::new(policy(Jitter::None));
        b.next_delay(0);
        b.next_delay(0);
        // A failed attempt long after the last connection: no on_connected,
        // so no reset.
        b.on_disconnected(t0 + secs(3600.0));
        assert_eq!(b.next_delay(0), secs(4.0));
        // on_connected is consumed by on_disconnected.
        b.on_connected(t0);
        b.on_disconnected(t0 + secs(1.0));
        b.on_disconnected(t0 + secs(100.0));
        assert_eq!(b.next_delay(0), secs(8.0));
    }

    #[test]
    fn scale_is_uniform_over_the_range() {
        let d = secs(1.0);
        assert_eq!(scale(d, 0), Duration::ZERO);
        assert_eq!(scale(d, u64::MAX), d);
        assert_eq!(scale(d, u64::MAX / 2), secs(0.5));
        assert_eq!(scale(Duration::ZERO, 12345), Duration::ZERO);
        assert_eq!(
            scale(Duration::MAX, u64::MAX),
            Duration::from_nanos(u64::MAX)
        );
    }

    #[test]
    fn splitmix_is_not_constant() {
        let mut r = JitterRng(0);
        let a = r.next_u64();
        let b = r.next_u64();
        assert_ne!(a, b);
        assert_ne!(JitterRng::from_os().0, JitterRng::from_os().0);
    }
}
