//! Graceful shutdown on SIGINT and SIGTERM (feature `signals`), the
//! way `wsreactor echo` ends: the first signal stops accepting and closes
//! every connection with 1001 (up to `shutdown_timeout`), a second one
//! stops at once.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::SigId;

use super::reactor::{Remote, Server};
use crate::server::Handler;

/// The handlers [`Remote::shutdown_on_signals`] installed; see
/// [`ShutdownSignals::remove`]. Dropping it leaves them installed.
#[derive(Debug)]
pub struct ShutdownSignals {
    ids: Vec<SigId>,
}

impl ShutdownSignals {
    /// Uninstall the handlers (e.g. once the reactor has returned, before
    /// starting another).
    pub fn remove(self) {
        for id in self.ids {
            signal_hook::low_level::unregister(id);
        }
    }
}

impl Remote {
    /// Shut the reactor down gracefully on SIGINT (Ctrl-C) or SIGTERM: the
    /// first signal calls [`Remote::shutdown`] (stop accepting, close every
    /// connection with 1001 "going away", wait up to
    /// `ServerConfig::shutdown_timeout`), a second one [`Remote::stop`].
    /// Without this, a signal ends the process at once and peers see the
    /// TCP connection drop without a close frame.
    ///
    /// The handlers run in the signal context itself (no signal thread: a
    /// second thread would put every socket call of the loop on glibc's
    /// slower multi-threaded path). They replace the default action of the
    /// two signals for the whole process; other handlers installed through
    /// `signal-hook` still run.
    ///
    /// ```no_run
    /// use wsreactor::{Ctx, Handler, Message, Server, ServerConfig};
    ///
    /// struct Echo;
    /// impl Handler for Echo {
    ///     fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message<'_>) {
    ///         let _ = ctx.send(msg);
    ///     }
    /// }
    ///
    /// let server = Server::bind("127.0.0.1:9001", ServerConfig::default(), Echo)?;
    /// server.stopper().shutdown_on_signals()?;
    /// server.run()?; // returns after Ctrl-C, once everyone is closed
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// The handlers cannot be installed.
    pub fn shutdown_on_signals(&self) -> io::Result<ShutdownSignals> {
        let seen = Arc::new(AtomicUsize::new(0));
        let mut ids = Vec::with_capacity(2);
        for signal in [SIGINT, SIGTERM] {
            let remote = self.clone();
            let seen = Arc::clone(&seen);
            #[allow(unsafe_code)]
            // SAFETY: the handler is async-signal-safe: an atomic increment,
            // atomic stores, and one write(2) to each reactor's eventfd
            // (mio's `Waker`; a `Cluster` has one per reactor, in a slice
            // allocated before); no allocation and no lock. (`Remote::wake` logs only
            // if that write fails, which a live eventfd does not do: mio
            // resets a full counter and retries.) The reactor logs the
            // shutdown itself.
            let registered = unsafe {
                signal_hook::low_level::register(signal, move || {
                    if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                        remote.shutdown();
                    } else {
                        remote.stop();
                    }
                })
            };
            match registered {
                Ok(id) => ids.push(id),
                Err(e) => {
                    ShutdownSignals { ids }.remove();
                    return Err(e);
                }
            }
        }
        Ok(ShutdownSignals { ids })
    }
}

impl<H: Handler> Server<H> {
    /// [`Remote::shutdown_on_signals`] for this server's reactor.
    ///
    /// # Errors
    /// The handlers cannot be installed.
    pub fn shutdown_on_signals(&self) -> io::Result<ShutdownSignals> {
        self.stopper().shutdown_on_signals()
    }
}
