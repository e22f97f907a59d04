//! `fastwebsockets-echo --addr A`: the fastwebsockets peer.
//!
//! A tokio current_thread runtime, hyper's HTTP/1 server with upgrades, and
//! `fastwebsockets::upgrade::upgrade` for the handshake, then the loop the
//! crate's echo example runs: a `FragmentCollector` (so fragmented messages
//! arrive whole), `read_frame` → `write_frame` for text and binary, with the
//! defaults `auto_pong` and `auto_close` on, inside `tokio::task::unconstrained`
//! as the example does. TCP_NODELAY is set, as wsreactor and raw-tcp-echo do.

use fastwebsockets::{upgrade, FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::net::TcpListener;

fn main() {
    let addr = wsreactor_peers::addr_arg("fastwebsockets-echo", "127.0.0.1:9004");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(addr).await.expect("bind");
        eprintln!(
            "fastwebsockets-echo listening on ws://{}",
            listener.local_addr().expect("local_addr")
        );
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    eprintln!("accept: {e}");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let conn = http1::Builder::new()
                    .serve_connection(io, service_fn(upgrade_request))
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
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::spawn(async move {
        if let Err(e) = tokio::task::unconstrained(echo(fut)).await {
            eprintln!("websocket: {e}");
        }
    });
    Ok(response)
}

async fn echo(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}
