//! Bulk channel transfers for the Go interop tests (../channels_test.go): the
//! Rust counterpart of node-0.22.1/stream.mjs and python/stream.py, run as
//! `worker stream` (a connection of its own, worker name `<prefix>-stream`).
//!
//! <prefix>::stream_write {writer, size, chunk?, messages?}
//!   writes `size` random bytes to the channel writer in writes of `chunk`
//!   bytes (default 1 MiB; the SDK frames them in 64 KiB), and after each
//!   1/(messages+1) of the data a text message "msg-<i>"; then closes the
//!   writer. Returns {sha256, bytes, messages: [{text, at}]} where `at` is
//!   the number of bytes written before the message.
//! <prefix>::stream_read {reader}
//!   reads the channel reader to its end. Returns {sha256, bytes, messages:
//!   [{text, at}]} where `at` is the number of bytes received before the
//!   message arrived.
//!
//! SHA-256 and the random bytes come from `ring`, already in the SDK's
//! dependency tree (rustls), so this adds nothing to the build.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use iii_sdk::channel::{ChannelReader, ChannelWriter};
use iii_sdk::{Error, IIIClient, RegisterFunction};
use ring::digest::{Context, SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Value};

use crate::seeds::channel_ref;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn u64_or(input: &Value, key: &str, default: u64) -> u64 {
    input.get(key).and_then(Value::as_u64).filter(|&n| n > 0).unwrap_or(default)
}

pub fn register(iii: &IIIClient, prefix: &str) {
    let c = iii.clone();
    iii.register_function(
        format!("{prefix}::stream_write"),
        RegisterFunction::new_async(move |input: Value| {
            let iii = c.clone();
            async move {
                let writer = ChannelWriter::new(iii.address(), &channel_ref(&input, "writer")?);
                let size = u64_or(&input, "size", 0);
                let chunk = u64_or(&input, "chunk", 1 << 20);
                let messages = input.get("messages").and_then(Value::as_u64).unwrap_or(0);
                let every = if messages > 0 { size / (messages + 1) } else { 0 };
                let rng = SystemRandom::new();
                let mut hash = Context::new(&SHA256);
                let mut buf = vec![0u8; chunk as usize];
                let mut sent = Vec::new();
                let mut written = 0u64;
                let mut next = 1u64; // next message number
                while written < size {
                    let mut n = chunk.min(size - written);
                    if every > 0 && next <= messages {
                        n = n.min(next * every - written);
                    }
                    let buf = &mut buf[..n as usize];
                    rng.fill(buf).map_err(|_| Error::Handler("no random bytes".into()))?;
                    hash.update(buf);
                    // write() returns once every 64 KiB frame was sent, so
                    // a text message sent next lands at its place.
                    writer.write(buf).await?;
                    written += n;
                    if every > 0 && next <= messages && written == next * every {
                        let text = format!("msg-{next}");
                        writer.send_message(&text).await?;
                        sent.push(json!({ "text": text, "at": written }));
                        next += 1;
                    }
                }
                writer.close().await?;
                Ok::<Value, Error>(json!({
                    "sha256": hex(hash.finish().as_ref()),
                    "bytes": written,
                    "messages": sent,
                }))
            }
        }),
    );

    let c = iii.clone();
    iii.register_function(
        format!("{prefix}::stream_read"),
        RegisterFunction::new_async(move |input: Value| {
            let iii = c.clone();
            async move {
                let reader = ChannelReader::new(iii.address(), &channel_ref(&input, "reader")?);
                let count = Arc::new(AtomicU64::new(0));
                let received = Arc::new(Mutex::new(Vec::<Value>::new()));
                // Text frames are dispatched from inside next_binary(), in
                // socket order: `count` is exactly what arrived before.
                let (at, sink) = (count.clone(), received.clone());
                reader
                    .on_message(move |text| {
                        sink.lock().unwrap().push(json!({ "text": text, "at": at.load(Ordering::SeqCst) }));
                    })
                    .await;
                let mut hash = Context::new(&SHA256);
                while let Some(chunk) = reader.next_binary().await? {
                    hash.update(&chunk);
                    count.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                }
                let messages = received.lock().unwrap().clone();
                Ok::<Value, Error>(json!({
                    "sha256": hex(hash.finish().as_ref()),
                    "bytes": count.load(Ordering::SeqCst),
                    "messages": messages,
                }))
            }
        }),
    );
}
