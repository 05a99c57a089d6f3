//! Seed "Use Channels", Example 3: Streaming Data Between Functions, with the
//! Rust crate iii-sdk 0.25.0 (a port: the seed has no Rust tab). The producer
//! writes the records into a new channel while the consumer, called with the
//! channel's read end, reads them.
//!
//!   cargo run --bin pipeline   registers both functions, calls the producer
//!                              once and prints the answer, keeps serving
//!
//! Env: III_URL (default ws://localhost:49134).

#[path = "../common.rs"]
mod common;

use iii_sdk::channel::ChannelReader;
use iii_sdk::helpers::create_channel;
use iii_sdk::protocol::TriggerRequest;
use iii_sdk::{Error, RegisterFunction};
use serde_json::{json, Value};

fn main() {
    let iii = common::connect();

    // The consumer: read the whole stream, parse the records, sum them.
    let c = iii.clone();
    iii.register_function(
        "pipeline::consumer",
        RegisterFunction::new_async(move |input: Value| {
            let iii = c.clone();
            async move {
                // Refs in the input are JSON: open the read end explicitly.
                let reader = ChannelReader::new(iii.address(), &common::channel_ref(&input, "reader")?);
                let raw = reader.read_all().await?;
                let records: Vec<Value> = serde_json::from_slice(&raw)?;
                let total: f64 = records.iter().filter_map(|r| r["value"].as_f64()).sum();
                Ok::<Value, Error>(json!({ "label": input["label"], "count": records.len(), "total": total }))
            }
        }),
    );

    // The producer: a channel, the records written to it while the consumer
    // is called with its read end.
    let c = iii.clone();
    iii.register_function(
        "pipeline::producer",
        RegisterFunction::new_async(move |input: Value| {
            let iii = c.clone();
            async move {
                let channel = create_channel(&iii, None).await?;
                let body = serde_json::to_vec(&input["records"])?;
                let writer = channel.writer;
                let write = async move {
                    writer.write(&body).await?;
                    writer.close().await
                };
                let call = iii.trigger(TriggerRequest {
                    function_id: "pipeline::consumer".to_string(),
                    payload: json!({ "label": "batch-001", "reader": channel.reader_ref }),
                    action: None,
                    timeout_ms: None,
                });
                let (written, result) = tokio::join!(write, call);
                written?;
                result
            }
        }),
    );

    // Try it (not part of the seed).
    let rt = common::runtime();
    let records = json!([{ "name": "a", "value": 10 }, { "name": "b", "value": 20 }, { "name": "c", "value": 30 }]);
    let answer = rt.block_on(iii.trigger(TriggerRequest {
        function_id: "pipeline::producer".to_string(),
        payload: json!({ "records": records }),
        action: None,
        timeout_ms: None,
    }));
    match answer {
        Ok(v) => println!("pipeline::producer answered: {v}"),
        Err(e) => {
            eprintln!("pipeline::producer: {e}");
            std::process::exit(1);
        }
    }

    common::serve(&rt, iii);
}
