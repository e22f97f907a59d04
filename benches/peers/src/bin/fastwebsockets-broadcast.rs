//! `fastwebsockets-broadcast --addr A`: the fastwebsockets fan-out peer.
//!
//! Every text or binary message any connection sends goes to every open
//! connection, the sender included, in order: the contract of
//! `wsreactor broadcast` and uWebSockets' `benchmarks/broadcast_test`.
//!
//! A tokio current_thread runtime, hyper's HTTP/1 server with upgrades and
//! `fastwebsockets::upgrade::upgrade` as in the echo peer; one
//! `tokio::sync::broadcast` channel of (opcode, `Bytes`) for the whole
//! server. Per connection, after the upgrade: subscribe, split the
//! WebSocket (`unstable-split`, over `tokio::io::split`), read whole
//! messages with `FragmentCollectorRead` and publish them (the payload
//! frozen into `Bytes`, so a broadcast is not copied per receiver), and
//! write what the channel delivers with `write_frame` (which frames it per
//! connection and writes at once, the crate's only way). Pongs and the
//! close reply the reader owes go to the writer through a small channel.
//! Both run inside `tokio::task::unconstrained`, as the echo peer does. A
//! receiver that falls more than `CHANNEL` messages behind is closed (the
//! channel would otherwise skip messages for it). TCP_NODELAY is set.

use bytes::Bytes;
use fastwebsockets::{upgrade, FragmentCollectorRead, Frame, OpCode, Payload, WebSocketError};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::net::TcpListener;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::mpsc;

/// Messages a receiver may lag behind before it is dropped.
const CHANNEL: usize = 4096;

type Hub = broadcast::Sender<(OpCode, Bytes)>;

fn main() {
    let addr = wsreactor_peers::addr_arg("fastwebsockets-broadcast", "127.0.0.1:9014");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(addr).await.expect("bind");
        eprintln!(
            "fastwebsockets-broadcast listening on ws://{}",
            listener.local_addr().expect("local_addr")
        );
        let (hub, _) = broadcast::channel(CHANNEL);
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    eprintln!("accept: {e}");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let hub: Hub = hub.clone();
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let conn = http1::Builder::new()
                    .serve_connection(io, service_fn(move |req| upgrade_request(req, hub.clone())))
                    .with_upgrades();
                if let Err(e) = conn.await {
                    eprintln!("http: {e}");
                }
            });
        }
    });
}

async fn upgrade_request(
    mut req: Request<Incoming>,
    hub: Hub,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::spawn(async move {
        if let Err(e) = tokio::task::unconstrained(serve(fut, hub)).await {
            eprintln!("websocket: {e}");
        }
    });
    Ok(response)
}

/// A frame's payload as `Bytes`, without a copy when it already is one.
fn into_bytes(payload: Payload<'_>) -> Bytes {
    match payload {
        Payload::Bytes(b) => b.freeze(),
        Payload::Owned(v) => Bytes::from(v),
        other => Bytes::copy_from_slice(&other),
    }
}

async fn serve(fut: upgrade::UpgradeFut, hub: Hub) -> Result<(), WebSocketError> {
    let ws = fut.await?;
    let mut rx = hub.subscribe();
    let (read, mut write) = ws.split(tokio::io::split);
    let mut read = FragmentCollectorRead::new(read);
    // Frames the reader owes the peer (pong, close reply), sent by the
    // writer.
    let (owed_tx, mut owed_rx) = mpsc::unbounded_channel::<(OpCode, Bytes)>();
    // Reads and publishes until the peer closes or the connection fails;
    // then drops `owed_tx`, so the writer sends what is owed and ends.
    let publish = async move {
        let mut owe = |f: Frame<'_>| {
            let _ = owed_tx.send((f.opcode, Bytes::copy_from_slice(&f.payload)));
            std::future::ready(Ok::<(), WebSocketError>(()))
        };
        loop {
            let frame = match read.read_frame(&mut owe).await {
                Ok(frame) => frame,
                Err(e) => {
                    eprintln!("websocket: {e}");
                    break;
                }
            };
            match frame.opcode {
                OpCode::Close => break,
                OpCode::Text | OpCode::Binary => {
                    // Err only when no one is subscribed, which cannot be
                    // while this connection is.
                    let _ = hub.send((frame.opcode, into_bytes(frame.payload)));
                }
                _ => {}
            }
        }
        drop(owed_tx);
        std::future::pending::<()>().await
    };
    let deliver = async {
        loop {
            let (op, data) = tokio::select! {
                biased;
                owed = owed_rx.recv() => match owed {
                    Some(f) => f,
                    None => return Ok(()),
                },
                msg = rx.recv() => match msg {
                    Ok(m) => m,
                    Err(RecvError::Lagged(n)) => {
                        eprintln!("a receiver fell {n} messages behind: closing it");
                        return Ok(());
                    }
                    Err(RecvError::Closed) => return Ok(()),
                },
            };
            write
                .write_frame(Frame::new(true, op, None, Payload::Borrowed(&data)))
                .await?;
        }
    };
    tokio::select! {
        _ = publish => Ok(()),
        r = deliver => r,
    }
}
