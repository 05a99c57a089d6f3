//! What every example does around its seed code: connect, and serve until
//! Ctrl-C.

use iii_sdk::channel::StreamChannelRef;
use iii_sdk::helpers::extract_channel_refs;
use iii_sdk::{register_worker, Error, IIIClient, InitOptions};
use serde_json::Value;

/// Connects to $III_URL (default ws://localhost:49134, as in the seed). The
/// SDK connects on a thread of its own; calls made before it is connected wait.
pub fn connect() -> IIIClient {
    let url = std::env::var("III_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "ws://localhost:49134".to_string());
    register_worker(&url, InitOptions::default())
}

/// A runtime for the example's own async code (the "try it" calls).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Serves until Ctrl-C, then shuts the client down.
pub fn serve(rt: &tokio::runtime::Runtime, iii: IIIClient) {
    rt.block_on(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    iii.shutdown();
}

/// The channel ref under `key` at the top level of a handler's input: the
/// Rust SDK passes refs as JSON; a ChannelReader/ChannelWriter opens one.
pub fn channel_ref(input: &Value, key: &str) -> Result<StreamChannelRef, Error> {
    extract_channel_refs(input)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, r)| r)
        .ok_or_else(|| Error::Handler(format!("missing channel ref {key:?}")))
}
