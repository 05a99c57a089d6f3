//! Seed "Use Channels", Example 2: Server-Sent Events (SSE) Streaming, with
//! the Rust crate iii-sdk 0.25.0 (a port; like download.rs it speaks the
//! response channel's protocol itself). Each event is one binary frame, which
//! the engine writes and flushes to the client as it arrives.
//!
//!   cargo run --bin sse   then: curl -N http://127.0.0.1:3111/events/stream
//!
//! Env: III_URL (default ws://localhost:49134), SSE_DELAY_MS (pause between
//! events, default 1000 as in the seed).

#[path = "../common.rs"]
mod common;

use std::time::Duration;

use iii_sdk::channel::ChannelWriter;
use iii_sdk::protocol::RegisterTriggerInput;
use iii_sdk::{Error, RegisterFunction};
use serde_json::{json, Value};

fn main() {
    let delay = Duration::from_millis(
        std::env::var("SSE_DELAY_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000),
    );
    let iii = common::connect();

    let c = iii.clone();
    iii.register_function(
        "events::stream",
        RegisterFunction::new_async(move |input: Value| {
            let iii = c.clone();
            async move {
                let res = ChannelWriter::new(iii.address(), &common::channel_ref(&input, "response")?);
                res.send_message(&json!({ "type": "set_status", "status_code": 200 }).to_string()).await?;
                res.send_message(
                    &json!({ "type": "set_headers", "headers": {
                        "content-type": "text/event-stream",
                        "cache-control": "no-cache",
                        "connection": "keep-alive",
                    }})
                    .to_string(),
                )
                .await?;

                for i in 1..=5 {
                    let frame = format!("id: {i}\nevent: progress\ndata: {}\n\n", json!({ "step": i, "total": 5 }));
                    res.write(frame.as_bytes()).await?;
                    tokio::time::sleep(delay).await;
                }

                let done = format!("id: 6\nevent: done\ndata: {}\n\n", json!({ "message": "complete" }));
                res.write(done.as_bytes()).await?;
                res.close().await?;
                Ok::<Value, Error>(Value::Null)
            }
        }),
    );

    // Deprecated in 0.25 in favour of iii.observe(..), a protocol extension
    // Sluice does not implement; register_trigger works with every engine.
    #[allow(deprecated)]
    iii.register_trigger(RegisterTriggerInput::new(
        "http",
        "events::stream",
        json!({ "api_path": "/events/stream", "http_method": "GET" }),
    ))
    .expect("register the http trigger");

    common::serve(&common::runtime(), iii);
}
