//! The receiver's answer must not depend on how the bytes were cut into
//! reads: a stream fed whole, split at every single boundary, a byte at a
//! time, or cut at random points gives exactly the same owned events, the
//! same failure (if any), the same queued output and the same close state.
//! Every run keeps the unconsumed bytes and prepends them to the next input,
//! as the read contract requires (checked in `Feeder`).

mod common;

use common::*;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config as ProptestConfig;
use wsreactor::proto::{CloseState, Config, Connection, Error, Role};

/// Everything observable after feeding a stream.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    events: Vec<Owned>,
    error: Option<Error>,
    /// What the connection queued (pongs, close echo, failure close).
    output: Vec<u8>,
    state: CloseState,
}

fn connection(role: Role, config: Config) -> Connection {
    match role {
        Role::Server => Connection::server(config),
        Role::Client => Connection::client(config, 0xfeed_beef),
    }
}

/// Feed `stream` cut at `cuts` (sorted positions). Pieces after a failure
/// must be discarded without events or errors.
fn run(role: Role, config: Config, stream: &[u8], cuts: &[usize]) -> Outcome {
    let mut conn = connection(role, config);
    let mut feeder = Feeder::default();
    let mut events = Vec::new();
    let mut error = None;
    let mut prev = 0;
    for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
        let piece = &stream[prev..cut];
        prev = cut;
        let before = events.len();
        match feeder.feed(&mut conn, piece, &mut events) {
            Ok(()) if error.is_some() => {
                assert_eq!(events.len(), before, "an event after the failure");
            }
            Ok(()) => {}
            Err(e) => {
                assert!(error.is_none(), "a second error after {error:?}: {e}");
                error = Some(e);
            }
        }
    }
    let output = drain_output(&mut conn);
    Outcome {
        events,
        error,
        output,
        state: conn.sender().state(),
    }
}

fn assert_same(role: Role, config: Config, stream: &[u8], cuts: &[usize], whole: &Outcome) {
    let split = run(role, config, stream, cuts);
    assert!(
        split == *whole,
        "cuts {cuts:?} of {} bytes:\n split: {split:?}\n whole: {whole:?}",
        stream.len()
    );
}

/// Every single cut, and a byte at a time.
fn check_every_split(role: Role, config: Config, stream: &[u8]) -> Outcome {
    let whole = run(role, config, stream, &[]);
    for cut in 0..=stream.len() {
        assert_same(role, config, stream, &[cut], &whole);
    }
    let every: Vec<usize> = (1..stream.len()).collect();
    assert_same(role, config, stream, &every, &whole);
    whole
}

// ---------------------------------------------------------------------------
// Fixed streams
// ---------------------------------------------------------------------------

/// A masked frame with its own key (so each frame unmasks at its own phase).
fn m(fin: bool, opcode: u8, payload: &[u8], key: u8) -> Vec<u8> {
    frame(
        fin,
        0,
        opcode,
        Some([key, key ^ 0x5a, key.wrapping_mul(7), 0xa5]),
        payload,
    )
}

/// Text, binary with a 16-bit length, a fragmented text message cut inside
/// code points with control frames between its fragments, an empty message,
/// a 125-byte pong, a fragmented binary message with an empty fragment.
fn mixed_messages() -> (Vec<u8>, Vec<Owned>) {
    let parts = [
        m(true, OP_TEXT, "Hello, κόσμε".as_bytes(), 1),
        m(true, OP_BINARY, &binary(300), 2),
        m(false, OP_TEXT, b"\xce\xba\xe1", 3),
        m(true, OP_PING, b"p", 4),
        m(false, OP_CONT, b"\xbd", 5),
        m(true, OP_PONG, b"", 6),
        m(true, OP_CONT, b"\xb9 \xf0\x9f\x98\x80", 7),
        m(true, OP_TEXT, b"", 8),
        m(true, OP_PONG, &binary(125), 9),
        m(false, OP_BINARY, &[1, 2, 3], 10),
        m(false, OP_CONT, &[], 11),
        m(true, OP_CONT, &binary(130), 12),
        m(true, OP_PING, b"", 13),
    ];
    let mut tail = vec![1, 2, 3];
    tail.extend_from_slice(&binary(130));
    let events = vec![
        Owned::Text("Hello, κόσμε".into()),
        Owned::Binary(binary(300)),
        Owned::Ping(b"p".to_vec()),
        Owned::Pong(Vec::new()),
        Owned::Text("\u{3ba}\u{1f79} \u{1f600}".into()),
        Owned::Text(String::new()),
        Owned::Pong(binary(125)),
        Owned::Binary(tail),
        Owned::Ping(Vec::new()),
    ];
    (parts.concat(), events)
}

/// The pongs a server owes for [`mixed_messages`].
fn mixed_pongs() -> Vec<u8> {
    [server_frame(OP_PONG, b"p"), server_frame(OP_PONG, b"")].concat()
}

#[test]
fn messages_then_close() {
    let (mut stream, mut events) = mixed_messages();
    stream.extend_from_slice(&m(true, OP_CLOSE, &close_payload(1000, b"done"), 14));
    // After the close, input is discarded.
    stream.extend_from_slice(&m(true, OP_TEXT, b"after close", 15));
    events.push(Owned::Close(Some((1000, "done".into()))));
    let whole = check_every_split(Role::Server, Config::default(), &stream);
    assert_eq!(whole.events, events);
    assert_eq!(whole.error, None);
    let mut output = mixed_pongs();
    output.extend_from_slice(&server_frame(OP_CLOSE, &1000u16.to_be_bytes()));
    assert_eq!(whole.output, output);
    assert_eq!(whole.state, CloseState::Closed);
}

#[test]
fn messages_without_close_stay_open() {
    let (stream, events) = mixed_messages();
    let whole = check_every_split(Role::Server, Config::default(), &stream);
    assert_eq!(whole.events, events);
    assert_eq!((whole.error, whole.state), (None, CloseState::Open));
    assert_eq!(whole.output, mixed_pongs());
}

/// A failure after the mixed messages: the events before it, then the error
/// with its close code, whatever the cuts.
fn check_failure_after_messages(config: Config, bad: &[u8], code: u16) {
    let (mut stream, events) = mixed_messages();
    stream.extend_from_slice(bad);
    stream.extend_from_slice(&m(true, OP_TEXT, b"never seen", 20));
    let whole = check_every_split(Role::Server, config, &stream);
    assert_eq!(whole.events, events);
    assert_eq!(whole.error.map(|e| e.close_code()), Some(code));
    let mut output = mixed_pongs();
    output.extend_from_slice(&server_frame(OP_CLOSE, &code.to_be_bytes()));
    assert_eq!(whole.output, output);
    assert_eq!(whole.state, CloseState::Closed);
}

#[test]
fn invalid_utf8_in_a_later_fragment() {
    let bad = [
        m(false, OP_TEXT, "κό".as_bytes(), 30),
        m(true, OP_PING, b"in between", 31),
        m(true, OP_CONT, b"ok \xf4\x90\x80\x80 rest of the frame", 32),
    ]
    .concat();
    // The ping before the failure is answered and reported too.
    let (mut stream, mut events) = mixed_messages();
    stream.extend_from_slice(&bad);
    events.push(Owned::Ping(b"in between".to_vec()));
    let whole = check_every_split(Role::Server, Config::default(), &stream);
    assert_eq!(whole.events, events);
    assert_eq!(whole.error.map(|e| e.close_code()), Some(1007));
    let mut output = mixed_pongs();
    output.extend_from_slice(&server_frame(OP_PONG, b"in between"));
    output.extend_from_slice(&server_frame(OP_CLOSE, &1007u16.to_be_bytes()));
    assert_eq!(whole.output, output);
}

#[test]
fn reserved_opcode_after_messages() {
    check_failure_after_messages(Config::default(), &m(true, 0x3, b"?", 40), 1002);
}

#[test]
fn invalid_close_code_after_messages() {
    check_failure_after_messages(
        Config::default(),
        &m(true, OP_CLOSE, &close_payload(1005, b""), 41),
        1002,
    );
}

#[test]
fn oversize_frame_after_messages() {
    let config = Config {
        max_frame_size: 400,
        ..Config::default()
    };
    check_failure_after_messages(config, &m(true, OP_BINARY, &binary(401), 42), 1009);
}

#[test]
fn too_many_fragments_after_messages() {
    let config = Config {
        max_fragments: 3,
        ..Config::default()
    };
    let bad = [
        m(false, OP_BINARY, b"1", 43),
        m(false, OP_CONT, b"2", 44),
        m(false, OP_CONT, b"3", 45),
        m(true, OP_CONT, b"4", 46),
    ]
    .concat();
    check_failure_after_messages(config, &bad, 1008);
}

#[test]
fn client_role_stream() {
    // A server's unmasked frames at a client: pongs are queued masked, and a
    // masked frame fails the connection.
    let stream = [
        server_frame(OP_TEXT, b"one"),
        frame(false, 0, OP_BINARY, None, &binary(200)),
        server_frame(OP_PING, b"are you there"),
        frame(true, 0, OP_CONT, None, &binary(70)),
        server_frame(OP_CLOSE, &close_payload(1001, b"bye")),
    ]
    .concat();
    let whole = check_every_split(Role::Client, Config::default(), &stream);
    let mut b = binary(200);
    b.extend_from_slice(&binary(70));
    assert_eq!(
        whole.events,
        [
            Owned::Text("one".into()),
            Owned::Ping(b"are you there".to_vec()),
            Owned::Binary(b),
            Owned::Close(Some((1001, "bye".into()))),
        ]
    );
    let out = parse_frames(&whole.output);
    assert_eq!(out.len(), 2);
    assert_eq!(
        (out[0].opcode, &out[0].payload[..]),
        (OP_PONG, &b"are you there"[..])
    );
    assert_eq!(
        (out[1].opcode, &out[1].payload[..]),
        (OP_CLOSE, &[0x03, 0xe9][..])
    );
    assert!(out.iter().all(|f| f.mask.is_some()));

    let bad = [
        server_frame(OP_TEXT, b"one"),
        m(true, OP_TEXT, b"masked", 1),
    ]
    .concat();
    let whole = check_every_split(Role::Client, Config::default(), &bad);
    assert_eq!(whole.events, [Owned::Text("one".into())]);
    assert_eq!(whole.error.map(|e| e.close_code()), Some(1002));
}

#[test]
fn large_frame_cut_at_many_points() {
    // A 64-bit length frame and a 16-bit one, cut at every 997th byte plus
    // inside each header.
    let big = binary(70_000);
    let stream = [
        m(true, OP_BINARY, &big, 50),
        m(false, OP_TEXT, utf8_text(40_000).as_bytes(), 51),
        m(true, OP_PING, b"mid", 52),
        m(true, OP_CONT, utf8_text(30_001).as_bytes(), 53),
    ]
    .concat();
    let whole = run(Role::Server, Config::default(), &stream, &[]);
    let mut text = utf8_text(40_000);
    text.push_str(&utf8_text(30_001));
    assert!(
        whole.events
            == [
                Owned::Binary(big),
                Owned::Ping(b"mid".to_vec()),
                Owned::Text(text)
            ]
    );
    for start in [0, 1, 5, 13, 14] {
        let cuts: Vec<usize> = (start..stream.len()).step_by(997).collect();
        assert_same(Role::Server, Config::default(), &stream, &cuts, &whole);
    }
}

// ---------------------------------------------------------------------------
// Random cuts and random streams
// ---------------------------------------------------------------------------

fn cuts_of(len: usize, idx: &[Index]) -> Vec<usize> {
    let mut cuts: Vec<usize> = idx.iter().map(|i| i.index(len + 1)).collect();
    cuts.sort_unstable();
    cuts
}

/// A control frame to interleave between fragments.
#[derive(Debug, Clone)]
enum Control {
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

/// One message of a random stream: its payload, where it is cut into
/// fragments, and a control frame (or none) after each fragment but the last.
#[derive(Debug, Clone)]
struct Msg {
    text: bool,
    payload: Vec<u8>,
    cuts: Vec<Index>,
    controls: Vec<Option<Control>>,
    key: [u8; 4],
}

fn control() -> impl Strategy<Value = Control> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..=125).prop_map(Control::Ping),
        proptest::collection::vec(any::<u8>(), 0..=125).prop_map(Control::Pong),
    ]
}

fn payload() -> impl Strategy<Value = (bool, Vec<u8>)> {
    prop_oneof![
        8 => proptest::collection::vec(any::<char>(), 0..60)
            .prop_map(|cs| (true, String::from_iter(cs).into_bytes())),
        8 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(|b| (false, b)),
        1 => (126usize..70_000).prop_map(|n| (false, binary(n))),
        1 => (126usize..20_000).prop_map(|n| (true, utf8_text(n).into_bytes())),
    ]
}

fn msg() -> impl Strategy<Value = Msg> {
    (
        payload(),
        proptest::collection::vec(any::<Index>(), 0..4),
        proptest::collection::vec(proptest::option::weighted(0.4, control()), 4),
        any::<[u8; 4]>(),
    )
        .prop_map(|((text, payload), cuts, controls, key)| Msg {
            text,
            payload,
            cuts,
            controls,
            key,
        })
}

/// The wire bytes of `msgs` (masked for a server) and the events a receiver
/// must produce, computed from the messages themselves.
fn build(role: Role, msgs: &[Msg], close: Option<u16>) -> (Vec<u8>, Vec<Owned>) {
    let mut wire = Vec::new();
    let mut events = Vec::new();
    let key = |k: [u8; 4]| match role {
        Role::Server => Some(k),
        Role::Client => None,
    };
    for msg in msgs {
        let mut bounds = cuts_of(msg.payload.len(), &msg.cuts);
        bounds.insert(0, 0);
        bounds.push(msg.payload.len());
        let n = bounds.len() - 1;
        for i in 0..n {
            let op = match (i, msg.text) {
                (0, true) => OP_TEXT,
                (0, false) => OP_BINARY,
                _ => OP_CONT,
            };
            let piece = &msg.payload[bounds[i]..bounds[i + 1]];
            let k = [msg.key[0], msg.key[1], msg.key[2], msg.key[3] ^ i as u8];
            wire.extend_from_slice(&frame(i == n - 1, 0, op, key(k), piece));
            if i + 1 < n {
                match &msg.controls[i] {
                    Some(Control::Ping(p)) => {
                        wire.extend_from_slice(&frame(true, 0, OP_PING, key(k), p));
                        events.push(Owned::Ping(p.clone()));
                    }
                    Some(Control::Pong(p)) => {
                        wire.extend_from_slice(&frame(true, 0, OP_PONG, key(k), p));
                        events.push(Owned::Pong(p.clone()));
                    }
                    None => {}
                }
            }
        }
        events.push(if msg.text {
            Owned::Text(String::from_utf8(msg.payload.clone()).unwrap())
        } else {
            Owned::Binary(msg.payload.clone())
        });
    }
    if let Some(code) = close {
        let p = close_payload(code, b"end");
        wire.extend_from_slice(&frame(true, 0, OP_CLOSE, key([9, 8, 7, 6]), &p));
        events.push(Owned::Close(Some((code, "end".into()))));
    }
    (wire, events)
}

fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Minimal failing inputs are printed; no regression files in the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(proptest_config(256))]

    #[test]
    fn random_cuts_of_fixed_streams(idx in proptest::collection::vec(any::<Index>(), 0..24)) {
        let (mut stream, _) = mixed_messages();
        stream.extend_from_slice(&m(true, OP_CLOSE, &close_payload(4001, b""), 60));
        let whole = run(Role::Server, Config::default(), &stream, &[]);
        prop_assert_eq!(whole.error, None);
        let cuts = cuts_of(stream.len(), &idx);
        assert_same(Role::Server, Config::default(), &stream, &cuts, &whole);
    }

    #[test]
    fn random_streams_random_cuts(
        msgs in proptest::collection::vec(msg(), 1..6),
        server in any::<bool>(),
        close in proptest::option::of(prop_oneof![Just(1000u16), Just(1011), 3000u16..5000]),
        idx in proptest::collection::vec(any::<Index>(), 0..16),
    ) {
        let role = if server { Role::Server } else { Role::Client };
        let (stream, expected) = build(role, &msgs, close);
        let whole = run(role, Config::default(), &stream, &[]);
        prop_assert_eq!(whole.error, None);
        prop_assert!(whole.events == expected, "events differ from the messages sent");
        let cuts = cuts_of(stream.len(), &idx);
        assert_same(role, Config::default(), &stream, &cuts, &whole);
        // And the first 64 bytes a byte at a time.
        let near: Vec<usize> = (0..stream.len().min(64)).collect();
        assert_same(role, Config::default(), &stream, &near, &whole);
    }
}
