//! `tokio-tungstenite-tls-echo --addr A --cert FILE --key FILE`: the
//! tokio-tungstenite peer over TLS.
//!
//! The same echo as `tokio-tungstenite-echo` (one current_thread runtime,
//! `accept_async`, `forward`), behind tokio-rustls with the configuration
//! wsreactor's `tls` feature uses: rustls on the `ring` provider, TLS 1.3
//! and 1.2, ALPN `http/1.1`. TCP_NODELAY is set.

use std::sync::Arc;

use futures_util::{future, StreamExt, TryStreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

fn usage_exit(code: i32) -> ! {
    println!("usage: tokio-tungstenite-tls-echo --addr IP:PORT --cert CHAIN.pem --key KEY.pem");
    std::process::exit(code)
}

fn main() {
    let (mut addr, mut cert, mut key) = ("127.0.0.1:9005".to_string(), None, None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage_exit(2));
        match a.as_str() {
            "--addr" => addr = value(),
            "--cert" => cert = Some(value()),
            "--key" => key = Some(value()),
            "-h" | "--help" => usage_exit(0),
            _ => usage_exit(2),
        }
    }
    let (Some(cert), Some(key)) = (cert, key) else {
        usage_exit(2)
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .expect("read --cert")
        .collect::<Result<_, _>>()
        .expect("PEM certificates");
    let key = PrivateKeyDer::from_pem_file(&key).expect("read --key");
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("certificate and key");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(&addr).await.expect("bind");
        eprintln!(
            "tokio-tungstenite-tls-echo listening on wss://{}",
            listener.local_addr().expect("local_addr")
        );
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve(acceptor.clone(), stream));
                }
                Err(e) => eprintln!("accept: {e}"),
            }
        }
    });
}

async fn serve(acceptor: TlsAcceptor, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let tls = match acceptor.accept(stream).await {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("tls: {e}");
            return;
        }
    };
    let ws = match tokio_tungstenite::accept_async(tls).await {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("handshake: {e}");
            return;
        }
    };
    let (sink, source) = ws.split();
    let _ = source
        .try_filter(|msg| future::ready(msg.is_text() || msg.is_binary()))
        .forward(sink)
        .await;
}
