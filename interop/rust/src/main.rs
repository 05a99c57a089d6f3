//! Interop worker for the Rust crate iii-sdk (pinned in Cargo.toml / Cargo.lock).
//! See ../README.md. The Rust counterpart of node-common/worker-core.mjs and
//! python/worker.py.
//!
//!   env III_URL (required), WORKER_PREFIX (default "rs"), SEEDS=0 to skip
//!   the seed examples.
//!
//! Registers <prefix>::{echo,fail,hang,mark,call,pid} and, on a second
//! connection unless SEEDS=0, the seed's channel Examples 3 and 4 ported to
//! Rust (seeds.rs); prints READY, and on SIGTERM/SIGINT shuts every SDK client
//! down (in parallel, bounded at 3 s) and exits 0.
//!
//! `worker stream` instead registers only <prefix>::{stream_write,stream_read}
//! (stream.rs, the counterpart of node-0.22.1/stream.mjs) on a connection
//! named <prefix>-stream; `worker cluster_modules` only the bound functions
//! of cluster_modules.rs (the counterpart of node-0.22.1/cluster_modules.mjs)
//! on a connection named <prefix>-cluster-<NODE_LABEL>.

mod cluster_modules;
mod seeds;
mod stream;

use std::io::Write;
use std::sync::mpsc;
use std::time::Duration;

use iii_sdk::protocol::TriggerRequest;
use iii_sdk::{
    register_worker, Error, IIIClient, InitOptions, RegisterFunction, TriggerAction, WorkerIdentityMode,
};
use iii_sdk::runtime::WorkerMetadata;
use iii_helpers::observability::OtelConfig;
use serde_json::{json, Value};

/// Print one marker line on stdout, flushed at once.
fn out(line: &str) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{line}");
    let _ = o.flush();
}

/// {code, message} of a failed trigger(): a remote error keeps the wire
/// ErrorBody's code and message; anything else (timeout, not connected) has
/// code null and the error's text as message.
fn normalise_error(err: &Error) -> Value {
    match err.invocation_error() {
        Some(inv) => json!({ "code": inv.code, "message": inv.message }),
        None => json!({ "code": null, "message": err.to_string() }),
    }
}

fn register_test_functions(iii: &IIIClient, prefix: &str) {
    iii.register_function(
        format!("{prefix}::echo"),
        RegisterFunction::new_async(|input: Value| async move { Ok::<_, Error>(input) }),
    );

    // An ordinary handler error: the SDK sends it as invocation_failed with
    // message "handler error: <text>" (Error's Display), see SDK_NOTES.md.
    let p = prefix.to_string();
    iii.register_function(
        format!("{prefix}::fail"),
        RegisterFunction::new_async(move |_input: Value| {
            let msg = format!("boom from {p}");
            async move { Err::<Value, Error>(Error::Handler(msg)) }
        }),
    );

    iii.register_function(
        format!("{prefix}::hang"),
        RegisterFunction::new_async(|input: Value| async move {
            let tag = match input.get("tag") {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => "undefined".to_string(),
            };
            out(&format!("HANG {tag}"));
            std::future::pending::<()>().await;
            Ok::<Value, Error>(Value::Null)
        }),
    );

    iii.register_function(
        format!("{prefix}::mark"),
        RegisterFunction::new_async(|input: Value| async move {
            let value = input.get("value").cloned().unwrap_or(Value::Null);
            out(&format!("MARK {}", serde_json::to_string(&value).unwrap_or_default()));
            Ok::<Value, Error>(Value::Null)
        }),
    );

    let client = iii.clone();
    iii.register_function(
        format!("{prefix}::call"),
        RegisterFunction::new_async(move |input: Value| {
            let client = client.clone();
            async move {
                let function_id = input
                    .get("function_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                // TriggerRequest.payload is a Value, not an Option: an omitted
                // payload is sent as "data": null (Node and Python omit the key).
                let payload = input.get("payload").cloned().unwrap_or(Value::Null);
                let action = match input.get("action") {
                    Some(Value::String(s)) if s == "void" => Some(TriggerAction::Void),
                    Some(Value::Object(o)) if o.get("type").and_then(Value::as_str) == Some("enqueue") => {
                        Some(TriggerAction::Enqueue {
                            queue: o.get("queue").and_then(Value::as_str).unwrap_or_default().to_string(),
                        })
                    }
                    Some(Value::Object(o)) if o.get("type").and_then(Value::as_str) == Some("void") => {
                        Some(TriggerAction::Void)
                    }
                    _ => None,
                };
                let timeout_ms = input.get("timeout_ms").and_then(Value::as_u64).filter(|&t| t > 0);
                let req = TriggerRequest { function_id, payload, action, timeout_ms };
                Ok::<Value, Error>(match client.trigger(req).await {
                    Ok(result) => json!({ "result": result }),
                    Err(err) => json!({ "error": normalise_error(&err) }),
                })
            }
        }),
    );

    iii.register_function(
        format!("{prefix}::pid"),
        RegisterFunction::new_async(|_input: Value| async move {
            Ok::<Value, Error>(json!({ "pid": std::process::id() }))
        }),
    );
}

fn main() {
    let url = match std::env::var("III_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            eprintln!("III_URL is required");
            std::process::exit(2);
        }
    };
    let prefix = std::env::var("WORKER_PREFIX")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "rs".to_string());

    // OTel is on by default in the SDK (it opens <III_URL>/otel); an explicit
    // OTEL_ENABLED in the environment still wins, as in the other workers.
    let otel = if std::env::var_os("OTEL_ENABLED").is_none() {
        Some(OtelConfig { enabled: Some(false), ..OtelConfig::default() })
    } else {
        None
    };

    let mode = std::env::args().nth(1);
    let (stream_mode, cluster_mode) = match mode.as_deref() {
        None => (false, false),
        Some("stream") => (true, false),
        Some("cluster_modules") => (false, true),
        Some(other) => {
            eprintln!("unknown mode {other:?} (want none, \"stream\" or \"cluster_modules\")");
            std::process::exit(2);
        }
    };
    let label = std::env::var("NODE_LABEL").unwrap_or_default();
    let name = if stream_mode {
        format!("{prefix}-stream")
    } else if cluster_mode {
        format!("{prefix}-cluster-{label}")
    } else {
        prefix.clone()
    };
    let iii = register_worker(
        &url,
        InitOptions {
            metadata: Some(WorkerMetadata { name, ..WorkerMetadata::default() }),
            otel: otel.clone(),
            ..InitOptions::default()
        },
    );
    if stream_mode {
        stream::register(&iii, &prefix);
    } else if cluster_mode {
        cluster_modules::register(&iii, &prefix, &label);
    } else {
        register_test_functions(&iii, &prefix);
    }
    let mut clients = vec![iii];

    if !stream_mode && !cluster_mode && std::env::var("SEEDS").as_deref() != Ok("0") {
        // Like the seed scripts: a connection of their own, default name.
        let seed = register_worker(
            &url,
            InitOptions { otel, identity: WorkerIdentityMode::Explicit, ..InitOptions::default() },
        );
        seeds::register(&seed, &format!("{prefix}."));
        clients.push(seed);
    }

    // SIGTERM / SIGINT -> shut down (bounded) and exit 0.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    out("READY");
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    });
    let (done_tx, done_rx) = mpsc::channel();
    let n = clients.len();
    for client in clients {
        let done_tx = done_tx.clone();
        std::thread::spawn(move || {
            client.shutdown();
            let _ = done_tx.send(());
        });
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    for _ in 0..n {
        if done_rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())).is_err() {
            break;
        }
    }
    let _ = std::io::stdout().flush();
    std::process::exit(0);
}
