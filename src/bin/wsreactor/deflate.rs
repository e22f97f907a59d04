//! The `--deflate` option shared by the subcommands.

use wsreactor::ServerConfig;

/// Turn permessage-deflate on, or say why it cannot be.
pub fn enable(config: &mut ServerConfig) -> Result<(), String> {
    if cfg!(feature = "deflate") {
        config.deflate.enabled = true;
        Ok(())
    } else {
        Err("--deflate needs a build with the deflate feature: cargo build --release --features deflate".into())
    }
}
