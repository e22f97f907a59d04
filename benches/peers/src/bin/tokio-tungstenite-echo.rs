//! `tokio-tungstenite-echo --addr A`: the tokio-tungstenite peer.
//!
//! A tokio current_thread runtime (one thread, like wsreactor's reactor),
//! `tokio_tungstenite::accept_async` with the default configuration, and the
//! echo the crate's own example does: split the stream, keep text and binary
//! messages, forward them into the sink (`forward` feeds while input is ready
//! and flushes when it runs dry). Pings are answered by tungstenite itself.
//! TCP_NODELAY is set, as wsreactor and raw-tcp-echo do.

use futures_util::{future, StreamExt, TryStreamExt};
use tokio::net::{TcpListener, TcpStream};

fn main() {
    let addr = wsreactor_peers::addr_arg("tokio-tungstenite-echo", "127.0.0.1:9003");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(addr).await.expect("bind");
        eprintln!(
            "tokio-tungstenite-echo listening on ws://{}",
            listener.local_addr().expect("local_addr")
        );
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve(stream));
                }
                Err(e) => eprintln!("accept: {e}"),
            }
        }
    });
}

async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let ws = match tokio_tungstenite::accept_async(stream).await {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("handshake: {e}");
            return;
        }
    };
    let (sink, source) = ws.split();
    // Errors end the connection; a benchmark peer has nothing better to do.
    let _ = source
        .try_filter(|msg| future::ready(msg.is_text() || msg.is_binary()))
        .forward(sink)
        .await;
}
