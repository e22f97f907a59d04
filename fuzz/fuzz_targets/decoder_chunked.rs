//! A stream of frames fed to a server-role `Connection` in chunks of
//! fuzzer-chosen sizes must produce exactly what it produces in one piece:
//! the same events, the same failure (close code), the same queued output
//! (pongs, close echo or failure close) and the same close state. Both must
//! also match `reference_receive`, a naive receiver written from the RFC
//! that checks the limits and close codes independently.
//!
//! Input layout: 4 bytes of `Config` (see `small_config`), one byte `k`,
//! `k % 8` chunk sizes (cycled; 0 is an empty read, no sizes means one byte
//! at a time), then the stream. Every run copies the stream into its own
//! buffer: the core unmasks in place.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsreactor::proto::{CloseState, Config, Connection};
use wsreactor_fuzz::{reference_receive, small_config, Decoded, Inbox, OwnedEvent};

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    events: Vec<OwnedEvent>,
    failure: Option<u16>,
    output: Vec<u8>,
    state: CloseState,
}

fn run(config: Config, chunks: &mut dyn Iterator<Item = usize>, stream: &[u8]) -> Outcome {
    let mut conn = Connection::server(config);
    let mut inbox = Inbox::new();
    let mut events = Vec::new();
    let mut failure = None;
    let mut rest = stream;
    loop {
        let n = chunks.next().unwrap_or(rest.len()).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        if failure.is_none() {
            failure = inbox.feed(&mut conn, chunk, &mut events);
        }
        if rest.is_empty() {
            break;
        }
    }
    let tx = conn.sender();
    Outcome {
        events,
        failure,
        output: tx.pending().to_vec(),
        state: tx.state(),
    }
}

fuzz_target!(|data: &[u8]| {
    let [c0, c1, c2, c3, k, rest @ ..] = data else {
        return;
    };
    let config = small_config([*c0, *c1, *c2, *c3]);
    let (sizes, stream) = rest.split_at(usize::from(k % 8).min(rest.len()));
    let whole = run(config, &mut std::iter::empty(), stream);
    let chunked = if sizes.iter().all(|&s| s == 0) {
        run(config, &mut std::iter::repeat(1), stream)
    } else {
        run(
            config,
            &mut sizes.iter().map(|&s| usize::from(s)).cycle(),
            stream,
        )
    };
    assert_eq!(whole, chunked, "chunking changed the outcome");
    let want = reference_receive(&config, stream);
    let got = Decoded {
        events: whole.events,
        failure: whole.failure,
        output: whole.output,
    };
    assert_eq!(got, want, "the receiver disagrees with the reference");
    let done = want.failure.is_some() || matches!(want.events.last(), Some(OwnedEvent::Close(_)));
    let state = if done {
        CloseState::Closed
    } else {
        CloseState::Open
    };
    assert_eq!(whole.state, state);
});
