//! `wsreactor autobahn-client`: drives the Autobahn|Testsuite fuzzing server
//! (`wstest -m fuzzingserver`) with client connections on the reactor.
//!
//! The protocol of the fuzzing server: `/getCaseCount` answers with one text
//! message (the number of cases), `/runCase?case=N&agent=A` runs case `N`
//! (1-based) against a client that echoes every message, and
//! `/updateReports?agent=A` writes the reports. Cases run one after the
//! other, each on a new connection, started as soon as the previous one has
//! seen the close (the reactor finishes the old connection's TCP teardown on
//! its own).

use std::ffi::OsString;
use std::time::Instant;

use wsreactor::{ConnId, Control, Ctx, Handler, Message, Reactor, Remote, ServerConfig};

const USAGE: &str = "\
wsreactor autobahn-client: run the Autobahn|Testsuite client cases

USAGE:
    wsreactor autobahn-client [OPTIONS]

Start `wstest -m fuzzingserver` first (autobahn/run.sh client does all of it).

OPTIONS:
    --url URL          The fuzzing server, ws:// or wss://
                       [default: ws://127.0.0.1:9002]
    --ca FILE          For wss://, also trust the PEM certificates in FILE
                       (needs --features tls)
    --agent NAME       Agent name in the reports (letters, digits, -_.)
                       [default: wsreactor]
    --cases FROM[-TO]  Run only these cases (1-based numbers, as the server
                       counts them) and skip the report update
    --deflate          Offer permessage-deflate (needs --features deflate)
    -h, --help         Print this help
";

/// Where the driver is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Asking for the number of cases.
    Count,
    /// Running case `n` (1-based).
    Case(u32),
    /// Asking the server to write its reports.
    Update,
}

struct Driver {
    base: String,
    agent: String,
    /// Explicit range of cases; the report update is skipped then.
    only: Option<(u32, u32)>,
    phase: Phase,
    total: Option<u32>,
    current: Option<ConnId>,
    remote: Option<Remote>,
    /// The current connection ended: go on from the next on_wake.
    advance: bool,
    /// Cases whose connection could not be made.
    failed_cases: Vec<(u32, String)>,
    cases_run: u32,
    result: Result<(), String>,
}

impl Driver {
    fn url(&self, phase: Phase) -> String {
        match phase {
            Phase::Count => format!("{}/getCaseCount", self.base),
            Phase::Case(n) => format!("{}/runCase?case={n}&agent={}", self.base, self.agent),
            Phase::Update => format!("{}/updateReports?agent={}", self.base, self.agent),
        }
    }

    /// The phase after the current one, or `None` when done.
    fn next_phase(&self) -> Option<Phase> {
        let total = self.total?;
        let (first, last) = self.only.unwrap_or((1, total));
        let last = last.min(total);
        let update = if self.only.is_some() {
            None
        } else {
            Some(Phase::Update)
        };
        match self.phase {
            Phase::Count if first <= last => Some(Phase::Case(first)),
            Phase::Count => update,
            Phase::Case(n) if n < last => Some(Phase::Case(n + 1)),
            Phase::Case(_) => update,
            Phase::Update => None,
        }
    }

    /// The current connection is over: on to the next one (from on_wake,
    /// where a Control is at hand).
    fn ended(&mut self) {
        self.current = None;
        self.advance = true;
        if let Some(r) = &self.remote {
            r.wake();
        }
    }

    fn fail(&mut self, ctl: &mut Control<'_>, why: String) {
        self.result = Err(why);
        ctl.stop();
    }
}

impl Handler for Driver {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
        if Some(ctx.id()) != self.current {
            return;
        }
        match self.phase {
            Phase::Count => match msg {
                Message::Text(t) => match t.trim().parse::<u32>() {
                    Ok(n) => self.total = Some(n),
                    Err(_) => log::warn!("getCaseCount answered {t:?}"),
                },
                Message::Binary(_) => log::warn!("getCaseCount answered with binary"),
            },
            // The echo: every case checks what comes back. A send fails
            // only once the close handshake started, when nothing more is due.
            Phase::Case(_) => {
                let _ = ctx.send(msg);
            }
            Phase::Update => {}
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_>, code: u16, reason: &str) {
        let id = ctx.id();
        if Some(id) == self.current {
            log::debug!("{:?} closed: {code} {reason}", self.phase);
            self.ended();
        }
    }

    fn on_connect_failed(&mut self, _ctl: &mut Control<'_>, id: ConnId, reason: &str) {
        if Some(id) != self.current {
            return;
        }
        match self.phase {
            Phase::Case(n) => {
                log::warn!("case {n}: cannot connect: {reason}");
                self.failed_cases.push((n, reason.to_string()));
            }
            phase => {
                self.result = Err(format!("cannot connect to {}: {reason}", self.url(phase)));
                self.advance = false;
                self.current = None;
                if let Some(r) = &self.remote {
                    r.stop();
                }
                return;
            }
        }
        self.ended();
    }

    fn on_wake(&mut self, ctl: &mut Control<'_>) {
        if !std::mem::take(&mut self.advance) {
            return;
        }
        loop {
            let Some(phase) = self.next_phase() else {
                if self.total.is_none() {
                    return self.fail(ctl, "getCaseCount gave no case count".into());
                }
                ctl.stop();
                return;
            };
            self.phase = phase;
            if let Phase::Case(n) = phase {
                self.cases_run += 1;
                log::debug!("case {n}/{}", self.total.unwrap_or(0));
            }
            let url = self.url(phase);
            match ctl.connect(&url) {
                Ok(id) => {
                    self.current = Some(id);
                    return;
                }
                Err(e) => match phase {
                    Phase::Case(n) => {
                        log::warn!("case {n}: cannot connect: {e}");
                        self.failed_cases.push((n, e.to_string()));
                    }
                    _ => return self.fail(ctl, format!("cannot connect to {url}: {e}")),
                },
            }
        }
    }
}

fn parse_range(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b) = (a.parse().ok()?, b.parse().ok()?);
    (a >= 1 && a <= b).then_some((a, b))
}

pub fn run(args: Vec<OsString>) -> Result<(), String> {
    use lexopt::prelude::*;
    let mut base = "ws://127.0.0.1:9002".to_string();
    let mut agent = "wsreactor".to_string();
    let mut only = None;
    let mut deflate = false;
    let mut ca = None;
    let mut parser = lexopt::Parser::from_args(args);
    let value = |p: &mut lexopt::Parser| -> Result<String, String> {
        p.value()
            .map_err(|e| e.to_string())?
            .into_string()
            .map_err(|_| "argument is not UTF-8".to_string())
    };
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("url") => base = value(&mut parser)?,
            Long("agent") => agent = value(&mut parser)?,
            Long("deflate") => deflate = true,
            Long("ca") => ca = Some(std::path::PathBuf::from(value(&mut parser)?)),
            Long("cases") => {
                let v = value(&mut parser)?;
                only = Some(parse_range(&v).ok_or(format!("--cases: bad range '{v}'"))?);
            }
            Short('h') | Long("help") => {
                print!("{USAGE}");
                return Ok(());
            }
            other => {
                return Err(format!(
                    "{} (see wsreactor autobahn-client --help)",
                    other.unexpected()
                ))
            }
        }
    }
    let ok_agent = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    if agent.is_empty() || !agent.chars().all(ok_agent) {
        return Err(format!(
            "--agent: '{agent}' must be letters, digits, '-', '_' or '.'"
        ));
    }
    let base = base.trim_end_matches('/').to_string();

    let mut config = ServerConfig {
        // The suite checks every frame the client sends: no heartbeat pings.
        ping_interval: None,
        ..ServerConfig::default()
    };
    if deflate {
        crate::deflate::enable(&mut config)?;
    }
    if let Some(ca) = &ca {
        crate::tls::trust(&mut config, ca)?;
    }
    let mut reactor = Reactor::new(
        config,
        Driver {
            base,
            agent,
            only,
            phase: Phase::Count,
            total: None,
            current: None,
            remote: None,
            advance: false,
            failed_cases: Vec::new(),
            cases_run: 0,
            result: Ok(()),
        },
    )
    .map_err(|e| format!("cannot start the event loop: {e}"))?;
    let remote = reactor.remote();
    let url = reactor.handler_mut().url(Phase::Count);
    let id = reactor
        .connect(&url)
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let d = reactor.handler_mut();
    d.current = Some(id);
    d.remote = Some(remote);
    let t0 = Instant::now();
    let d = reactor
        .run()
        .map_err(|e| format!("event loop failed: {e}"))?;
    d.result?;
    log::info!(
        "ran {} of {} cases in {:.1?}",
        d.cases_run,
        d.total.unwrap_or(0),
        t0.elapsed()
    );
    if d.failed_cases.is_empty() {
        Ok(())
    } else {
        let list: Vec<String> = d
            .failed_cases
            .iter()
            .map(|(n, why)| format!("{n} ({why})"))
            .collect();
        Err(format!(
            "{} cases could not connect: {}",
            list.len(),
            list.join(", ")
        ))
    }
}
