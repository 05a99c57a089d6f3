//! Namespace interop worker for the Rust crate iii-sdk: the counterpart of
//! ../../python/namespaces.py. Built by ../../setup.sh (`--bin ns_worker`).
//!
//!   env III_URL (required), WORKER_PREFIX (worker name and answer tag),
//!   NS (the worker's namespace; unset: none), FNS (comma-separated ids,
//!   default <prefix>::who).
//!
//! Every id in FNS answers {"worker", "namespace", "function_id", "input"};
//! <prefix>::call forwards {function_id, payload, namespace?} and answers
//! {"result"} or {"error": {code, message}}. Prints READY, then "FATAL <code>"
//! if the engine rejects the worker for good; exits 0 on SIGTERM.

use std::io::Write;
use std::time::Duration;

use iii_helpers::observability::OtelConfig;
use iii_sdk::protocol::TriggerRequest;
use iii_sdk::runtime::WorkerMetadata;
use iii_sdk::{register_worker, Error, InitOptions, RegisterFunction};
use serde_json::{json, Value};

fn out(line: &str) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{line}");
    let _ = o.flush();
}

fn main() {
    let url = std::env::var("III_URL").unwrap_or_default();
    if url.is_empty() {
        eprintln!("III_URL is required");
        std::process::exit(2);
    }
    let prefix = std::env::var("WORKER_PREFIX").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "rsns".into());
    let ns = std::env::var("NS").ok().filter(|s| !s.is_empty());
    let fns = std::env::var("FNS").unwrap_or_else(|_| format!("{prefix}::who"));
    let otel = if std::env::var_os("OTEL_ENABLED").is_none() {
        Some(OtelConfig { enabled: Some(false), ..OtelConfig::default() })
    } else {
        None
    };
    let iii = register_worker(
        &url,
        InitOptions {
            metadata: Some(WorkerMetadata { name: prefix.clone(), ..WorkerMetadata::default() }),
            namespace: ns.clone(),
            otel,
            ..InitOptions::default()
        },
    );
    for fid in fns.split(',').filter(|s| !s.is_empty()) {
        let (tag, ns, id) = (prefix.clone(), ns.clone(), fid.to_string());
        iii.register_function(
            fid.to_string(),
            RegisterFunction::new_async(move |input: Value| {
                let v = json!({ "worker": tag, "namespace": ns, "function_id": id, "input": input });
                async move { Ok::<Value, Error>(v) }
            }),
        );
    }
    let client = iii.clone();
    iii.register_function(
        format!("{prefix}::call"),
        RegisterFunction::new_async(move |input: Value| {
            let client = client.clone();
            async move {
                let function_id = input.get("function_id").and_then(Value::as_str).unwrap_or_default().to_string();
                let payload = input.get("payload").cloned().unwrap_or(Value::Null);
                let req = TriggerRequest { function_id, payload, action: None, timeout_ms: None };
                let res = match input.get("namespace").and_then(Value::as_str) {
                    Some(ns) => client.trigger(req.namespace(ns)).await,
                    None => client.trigger(req).await,
                };
                Ok::<Value, Error>(match res {
                    Ok(result) => json!({ "result": result }),
                    Err(err) => match err.invocation_error() {
                        Some(inv) => json!({ "error": { "code": inv.code, "message": inv.message } }),
                        None => json!({ "error": { "code": null, "message": err.to_string() } }),
                    },
                })
            }
        }),
    );

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    out("READY");
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        // The SDK has no callback for a fatal rejection: look for it.
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let mut reported = false;
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
                _ = tick.tick() => {
                    if !reported {
                        if let Some(Error::RegistrationRejected { code, .. }) = iii.fatal_error() {
                            out(&format!("FATAL {code}"));
                            reported = true;
                        }
                    }
                }
            }
        }
    });
    let handle = std::thread::spawn(move || iii.shutdown());
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while !handle.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::process::exit(0);
}
