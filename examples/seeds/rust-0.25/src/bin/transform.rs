//! Seed "Use Channels", Example 4: Bidirectional Streaming with Progress, with
//! the Rust crate iii-sdk 0.25.0 (a port: the seed has no Rust tab). The
//! coordinator sends text through one channel to the worker, which answers on
//! a second channel with the text upper-cased and one progress message (a
//! text frame) per chunk it read.
//!
//!   cargo run --bin transform   registers both functions, calls the
//!                               coordinator once and prints the answer, keeps serving
//!
//! Env: III_URL (default ws://localhost:49134).

#[path = "../common.rs"]
mod common;

use std::sync::{Arc, Mutex};

use iii_sdk::channel::{ChannelReader, ChannelWriter};
use iii_sdk::helpers::create_channel;
use iii_sdk::protocol::TriggerRequest;
use iii_sdk::{Error, RegisterFunction};
use serde_json::{json, Value};

fn main() {
    let iii = common::connect();

    // The worker: upper-case what it reads, one progress message per chunk
    // read, the result written to the output channel.
    let c = iii.clone();
    iii.register_function(
        "transform::worker",
        RegisterFunction::new_async(move |input: Value| {
            let iii = c.clone();
            async move {
                let reader = ChannelReader::new(iii.address(), &common::channel_ref(&input, "reader")?);
                let writer = ChannelWriter::new(iii.address(), &common::channel_ref(&input, "writer")?);
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

    // The coordinator: an input and an output channel, the text written to
    // one, the result and the progress messages read from the other while
    // the worker runs.
    let c = iii.clone();
    iii.register_function(
        "transform::coordinator",
        RegisterFunction::new_async(move |input: Value| {
            let iii = c.clone();
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

                let text = input["text"].as_str().unwrap_or_default().to_string();
                let writer = input_channel.writer;
                let write = async move {
                    writer.write(text.as_bytes()).await?;
                    writer.close().await
                };
                let call = iii.trigger(TriggerRequest {
                    function_id: "transform::worker".to_string(),
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

    // Try it (not part of the seed).
    let rt = common::runtime();
    let answer = rt.block_on(iii.trigger(TriggerRequest {
        function_id: "transform::coordinator".to_string(),
        payload: json!({ "text": "hello, sluice" }),
        action: None,
        timeout_ms: None,
    }));
    match answer {
        Ok(v) => println!("transform::coordinator answered: {v}"),
        Err(e) => {
            eprintln!("transform::coordinator: {e}");
            std::process::exit(1);
        }
    }

    common::serve(&rt, iii);
}
