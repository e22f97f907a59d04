//! `tokio-tungstenite-broadcast --addr A`: the tokio-tungstenite fan-out peer.
//!
//! Every text or binary message any connection sends goes to every open
//! connection, the sender included, in order: the contract of
//! `wsreactor broadcast` and uWebSockets' `benchmarks/broadcast_test`.
//!
//! A tokio current_thread runtime (one thread, like the echo peer), one
//! `tokio::sync::broadcast` channel for the whole server, and per connection
//! the structure of the crate's own chat-server example: `accept_async`
//! with the default configuration, the stream split, one future that
//! publishes what the connection reads and one that forwards what the
//! channel delivers into the sink (feeding while messages are ready,
//! flushing when none is), raced in the connection's task. A connection
//! subscribes as soon as its handshake is done. tungstenite's `Message`
//! holds its payload in `Bytes`, so a broadcast is not copied per receiver;
//! each sink frames it. A receiver that falls more than `CHANNEL` messages
//! behind is closed (the channel would otherwise skip messages for it, which
//! the contract forbids). TCP_NODELAY is set, as everywhere.

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio_tungstenite::tungstenite::Message;

/// Messages a receiver may lag behind before it is dropped.
const CHANNEL: usize = 4096;

fn main() {
    let addr = wsreactor_peers::addr_arg("tokio-tungstenite-broadcast", "127.0.0.1:9013");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(addr).await.expect("bind");
        eprintln!(
            "tokio-tungstenite-broadcast listening on ws://{}",
            listener.local_addr().expect("local_addr")
        );
        let (tx, _) = broadcast::channel::<Message>(CHANNEL);
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve(stream, tx.clone()));
                }
                Err(e) => eprintln!("accept: {e}"),
            }
        }
    });
}

async fn serve(stream: TcpStream, tx: broadcast::Sender<Message>) {
    let _ = stream.set_nodelay(true);
    let ws = match tokio_tungstenite::accept_async(stream).await {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("handshake: {e}");
            return;
        }
    };
    let mut rx = tx.subscribe();
    let (mut sink, mut source) = ws.split();
    let publish = async {
        while let Some(Ok(msg)) = source.next().await {
            match msg {
                Message::Text(_) | Message::Binary(_) => {
                    // Err only when no one is subscribed, which cannot be
                    // while this connection is.
                    let _ = tx.send(msg);
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    };
    let deliver = async {
        loop {
            let msg = match rx.recv().await {
                Ok(msg) => msg,
                Err(RecvError::Lagged(n)) => {
                    eprintln!("a receiver fell {n} messages behind: closing it");
                    return;
                }
                Err(RecvError::Closed) => return,
            };
            if sink.feed(msg).await.is_err() {
                return;
            }
            loop {
                match rx.try_recv() {
                    Ok(msg) => {
                        if sink.feed(msg).await.is_err() {
                            return;
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Lagged(n)) => {
                        eprintln!("a receiver fell {n} messages behind: closing it");
                        return;
                    }
                    Err(TryRecvError::Closed) => return,
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    };
    // Either side ending ends the connection; tungstenite has already
    // answered a close frame when `publish` sees it.
    tokio::select! {
        _ = publish => {}
        _ = deliver => {}
    }
    let _ = sink.close().await;
}
