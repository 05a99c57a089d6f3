//! Seed "Use Channels", Example 1: File Download via HTTP Endpoint, with the
//! Rust crate iii-sdk 0.25.0 (a port: the seed has no Rust tab, and the crate
//! has no `http()` helper, so the handler speaks the response channel's
//! protocol itself: `set_status` and `set_headers` text messages, then the
//! body as binary frames).
//!
//!   cargo run --bin download   then: curl -OJ http://127.0.0.1:3111/files/quarterly-report.pdf
//!
//! Env: III_URL (default ws://localhost:49134), DATA_DIR (default /data/reports).

#[path = "../common.rs"]
mod common;

use std::io::Read;
use std::path::Path;

use iii_sdk::channel::ChannelWriter;
use iii_sdk::protocol::RegisterTriggerInput;
use iii_sdk::{Error, RegisterFunction};
use serde_json::{json, Value};

fn main() {
    let data_dir = std::env::var("DATA_DIR").unwrap_or_else(|_| "/data/reports".to_string());
    let iii = common::connect();

    let c = iii.clone();
    iii.register_function(
        "files::download",
        RegisterFunction::new_async(move |input: Value| {
            let iii = c.clone();
            let data_dir = data_dir.clone();
            async move {
                let filename = input["path_params"]["filename"].as_str().unwrap_or_default().to_string();
                let res = ChannelWriter::new(iii.address(), &common::channel_ref(&input, "response")?);
                // Only the last path element: a request cannot reach outside DATA_DIR.
                let name = Path::new(&filename).file_name().unwrap_or_default();
                let mut file = match std::fs::File::open(Path::new(&data_dir).join(name)) {
                    Ok(f) => f,
                    Err(e) => {
                        res.send_message(&json!({ "type": "set_status", "status_code": 404 }).to_string()).await?;
                        res.write(e.to_string().as_bytes()).await?;
                        res.close().await?;
                        return Ok(Value::Null);
                    }
                };

                res.send_message(&json!({ "type": "set_status", "status_code": 200 }).to_string()).await?;
                res.send_message(
                    &json!({ "type": "set_headers", "headers": {
                        "content-type": "application/octet-stream",
                        "content-disposition": format!("attachment; filename=\"{filename}\""),
                    }})
                    .to_string(),
                )
                .await?;

                // 64 KiB at a time: the file is never held whole.
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    let n = file.read(&mut buf).map_err(|e| Error::Handler(e.to_string()))?;
                    if n == 0 {
                        break;
                    }
                    res.write(&buf[..n]).await?;
                }
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
        "files::download",
        json!({ "api_path": "/files/:filename", "http_method": "GET" }),
    ))
    .expect("register the http trigger");

    common::serve(&common::runtime(), iii);
}
