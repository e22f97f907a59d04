//! The TLS options shared by the subcommands (`--tls-cert`, `--tls-key`,
//! `--ca`), and certificate reload on SIGHUP.

use std::path::{Path, PathBuf};

use wsreactor::ServerConfig;

/// A server's certificate and key files, kept for reloads.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub struct ServerFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `--tls-cert` and `--tls-key` go together.
pub fn server_files(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<Option<ServerFiles>, String> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(ServerFiles { cert, key })),
        _ => Err("--tls-cert and --tls-key go together".into()),
    }
}

#[cfg(feature = "tls")]
mod imp {
    use super::*;
    use wsreactor::net::tls::{client_config_with_ca, server_config_from_pem, TlsAcceptor};

    /// Serve TLS with the files' certificate chain and key.
    pub fn serve(config: &mut ServerConfig, files: &ServerFiles) -> Result<TlsAcceptor, String> {
        let tls = server_config_from_pem(&files.cert, &files.key, None)
            .map_err(|e| format!("TLS: {e}"))?;
        let acceptor = TlsAcceptor::new(tls);
        config.tls = Some(acceptor.clone());
        Ok(acceptor)
    }

    /// Load the files again; on failure the acceptor keeps what it has.
    pub fn reload(acceptor: &TlsAcceptor, files: &ServerFiles) {
        let current = acceptor.config();
        match server_config_from_pem(&files.cert, &files.key, Some(&current)) {
            Ok(tls) => {
                acceptor.replace(tls);
                log::info!("TLS certificate reloaded from {}", files.cert.display());
            }
            Err(e) => log::error!("TLS reload failed, keeping the current certificate: {e}"),
        }
    }

    /// Trust `ca` besides Mozilla's roots for `wss://` URLs.
    pub fn trust(config: &mut ServerConfig, ca: &Path) -> Result<(), String> {
        config.tls_client = Some(client_config_with_ca(ca).map_err(|e| format!("--ca: {e}"))?);
        Ok(())
    }

    pub type Acceptor = TlsAcceptor;
}

#[cfg(not(feature = "tls"))]
mod imp {
    use super::*;

    const NEEDS: &str = "needs a build with the tls feature: cargo build --release --features tls";

    pub fn serve(_config: &mut ServerConfig, _files: &ServerFiles) -> Result<Acceptor, String> {
        Err(format!("--tls-cert {NEEDS}"))
    }

    pub fn reload(_acceptor: &Acceptor, _files: &ServerFiles) {}

    pub fn trust(_config: &mut ServerConfig, _ca: &Path) -> Result<(), String> {
        Err(format!("--ca {NEEDS}"))
    }

    /// Never made in a build without TLS.
    #[derive(Debug, Clone)]
    pub enum Acceptor {}
}

pub use imp::{reload, serve, trust, Acceptor};
