//! Seed 000 "Use Channels", Examples 3 and 4, ported to the Rust iii-sdk (the
//! seed has no Rust tab). Same ids, inputs and outputs as
//! node-0.22.1/seed_pipeline.mjs and seed_transform.mjs, on a connection of
//! their own (as each seed script has its own registerWorker()):
//!
//!   <P>.pipeline::producer   {"records":[{name,value},...]} (+ "consumer"?: id)
//!                            -> the consumer's {"label","count","total"}
//!   <P>.pipeline::consumer   {"label", "reader": <read ref>} -> {"label","count","total"}
//!   <P>.transform::coordinator {"text"} (+ "worker"?: id) -> {"result","progress":[...]}
//!   <P>.transform::worker    {"reader": <read ref>, "writer": <write ref>} -> {"status":"done"}
//!
//! Channel ends received in a payload are opened with
//! `ChannelReader::new(iii.address(), &ref)` / `ChannelWriter::new(..)`, as the
//! crate's own tests do (the Rust SDK does not turn refs into ends by itself).
//! The producer and the coordinator write their input while the call runs
//! (like the Node seed, whose write is asynchronous), so nothing depends on
//! the engine buffering a whole payload before the reader connects.

use std::sync::{Arc, Mutex};

use iii_sdk::channel::{ChannelReader, ChannelWriter, StreamChannelRef};
use iii_sdk::helpers::{create_channel, extract_channel_refs};
use iii_sdk::protocol::TriggerRequest;
use iii_sdk::{Error, IIIClient, RegisterFunction};
use serde_json::{json, Value};

/// The channel ref under `key` at the top level of a payload.
pub(crate) fn channel_ref(input: &Value, key: &str) -> Result<StreamChannelRef, Error> {
    extract_channel_refs(input)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, r)| r)
        .ok_or_else(|| Error::Handler(format!("missing channel ref {key:?}")))
}

fn string_or(input: &Value, key: &str, default: String) -> String {
    input.get(key).and_then(Value::as_str).map(str::to_string).unwrap_or(default)
}

pub fn register(iii: &IIIClient, p: &str) {
    // Example 3, consumer: read the whole stream, parse the records, sum them.
    let c = iii.clone();
    iii.register_function(
        format!("{p}pipeline::consumer"),
        RegisterFunction::new_async(move |input: Value| {
            let iii = c.clone();
            async move {
                let reader = ChannelReader::new(iii.address(), &channel_ref(&input, "reader")?);
                let raw = reader.read_all().await?;
                let records: Vec<Value> = serde_json::from_slice(&raw)?;
                let total: f64 = records.iter().filter_map(|r| r["value"].as_f64()).sum();
                Ok::<Value, Error>(json!({ "label": input["label"], "count": records.len(), "total": total }))
            }
        }),
    );

    // Example 3, producer: a channel, the records written to it, the consumer
    // called with its read end.
    let c = iii.clone();
    let consumer = format!("{p}pipeline::consumer");
    iii.register_function(
        format!("{p}pipeline::producer"),
        RegisterFunction::new_async(move |input: Value| {
            let iii = c.clone();
            let consumer = string_or(&input, "consumer", consumer.clone());
            async move {
                let channel = create_channel(&iii, None).await?;
                let body = serde_json::to_vec(&input["records"])?;
                let writer = channel.writer;
                let write = async move {
                    writer.write(&body).await?;
                    writer.close().await
                };
                let call = iii.trigger(TriggerRequest {
                    function_id: consumer,
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

    // Example 4, worker: upper-case what it reads, one progress message per
    // chunk read, the result written to the output channel.
    let c = iii.clone();
    iii.register_function(
        format!("{p}transform::worker"),
        RegisterFunction::new_async(move |input: Value| {
            let iii = c.clone();
            async move {
                let reader = ChannelReader::new(iii.address(), &channel_ref(&input, "reader")?);
                let writer = ChannelWriter::new(iii.address(), &channel_ref(&input, "writer")?);
                let mut text = Vec::new();
                let mut count = 0;
                while let Some(chunk) = reader.next_binary().await? {
                    text.extend_from_slice(&chunk);
                    count += 1;
                    writer.send_message(&json!({ "type": "progress", "chunks": count }).to_string()).await?;
                }
                let result = String::from_utf8_lossy(&text).to_uppercase();
                writer.write(result.as_bytes()).await?;
                writer.close().await?;
                Ok::<Value, Error>(json!({ "status": "done" }))
            }
        }),
    );

    // Example 4, coordinator: an input and an output channel, the text
    // written to one, the result and the progress messages read from the
    // other while the worker runs.
    let c = iii.clone();
    let worker = format!("{p}transform::worker");
    iii.register_function(
        format!("{p}transform::coordinator"),
        RegisterFunction::new_async(move |input: Value| {
            let iii = c.clone();
            let worker = string_or(&input, "worker", worker.clone());
            async move {
                let input_channel = create_channel(&iii, None).await?;
                let output_channel = create_channel(&iii, None).await?;

                let progress = Arc::new(Mutex::new(Vec::<Value>::new()));
                let sink = progress.clone();
                output_channel
                    .reader
                    .on_message(move |msg| {
                        if let Ok(v) = serde_json::from_str(&msg) {
                            sink.lock().unwrap().push(v);
                        }
                    })
                    .await;

                let text = string_or(&input, "text", String::new());
                let writer = input_channel.writer;
                let write = async move {
                    writer.write(text.as_bytes()).await?;
                    writer.close().await
                };
                let call = iii.trigger(TriggerRequest {
                    function_id: worker,
                    payload: json!({
                        "reader": input_channel.reader_ref,
                        "writer": output_channel.writer_ref,
                    }),
                    action: None,
                    timeout_ms: None,
                });
                let reader = output_channel.reader;
                let read = async move { reader.read_all().await };
                let (written, called, result) = tokio::join!(write, call, read);
                written?;
                called?;
                let result = String::from_utf8_lossy(&result?).into_owned();
                let progress = progress.lock().unwrap().clone();
                Ok::<Value, Error>(json!({ "result": result, "progress": progress }))
            }
        }),
    );
}
