//! observe.v1 interop worker for the Rust crate iii-sdk 0.25: the Rust
//! counterpart of ../../python/observe.py (interop/observe_test.go). Built by
//! ../../setup.sh (`--bin obs_worker`).
//!
//!   env III_URL (required), WORKER_PREFIX (function ids <prefix>::...).
//!
//! The owner connection hosts <prefix>::charge and <prefix>::local-call
//! (which calls charge in-process); the watcher hosts <prefix>::alert and
//! <prefix>::alert-local and observes charge. Prints `REFUSED <code>` for the
//! refused observers, `OBSERVING <id>`, `READY`, then `ACT <target> <json>`
//! per activation; exits 0 on SIGTERM.

use std::io::Write;
use std::time::Duration;

use iii_helpers::observability::OtelConfig;
use iii_sdk::protocol::TriggerRequest;
use iii_sdk::runtime::WorkerMetadata;
use iii_sdk::{
    current_invocation, register_worker, Capture, Error, IIIClient, InitOptions, ObserverOptions, RegisterFunction,
    Source, WorkerIdentityMode,
};
use serde_json::{json, Value};

fn out(line: &str) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{line}");
    let _ = o.flush();
}

fn client(url: &str, name: String) -> IIIClient {
    register_worker(
        url,
        InitOptions {
            metadata: Some(WorkerMetadata { name, ..WorkerMetadata::default() }),
            otel: Some(OtelConfig { enabled: Some(false), ..OtelConfig::default() }),
            identity: WorkerIdentityMode::Explicit,
            ..InitOptions::default()
        },
    )
}

fn target(name: &'static str) -> RegisterFunction {
    RegisterFunction::new(move |input: Value, metadata: Option<Value>| {
        let depth = current_invocation().map_or(-1, |c| c.observe_depth as i64);
        out(&format!("ACT {name} {}", json!({ "data": input, "metadata": metadata, "depth": depth })));
        Ok::<Value, Error>(Value::Null)
    })
}

fn main() {
    let url = std::env::var("III_URL").unwrap_or_default();
    if url.is_empty() {
        eprintln!("III_URL is required");
        std::process::exit(2);
    }
    let p = std::env::var("WORKER_PREFIX").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "rsobs".into());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let owner = client(&url, format!("{p}-owner"));
    let watcher = client(&url, format!("{p}-watcher"));
    rt.block_on(async {
        for c in [&owner, &watcher] {
            c.wait_until_registered(Duration::from_secs(10)).await.expect("engine reachable");
        }
    });
    let charge = format!("{p}::charge");
    owner.register_function(
        &charge,
        RegisterFunction::new(|input: Value| {
            if input["amount"].as_i64().unwrap_or(0) < 0 {
                return Err(Error::Remote { code: "CARD_DECLINED".into(), message: "declined".into(), stacktrace: None });
            }
            Ok(json!({ "charged": input["amount"] }))
        }),
    );
    let (inner, c2) = (owner.clone(), charge.clone());
    owner.register_function(
        format!("{p}::local-call"),
        RegisterFunction::new_async(move |input: Value| {
            let (inner, c2) = (inner.clone(), c2.clone());
            async move { inner.trigger(TriggerRequest::new(&c2, input)).await }
        }),
    );
    watcher.register_function(format!("{p}::alert"), target("alert"));
    watcher.register_function(format!("{p}::alert-local"), target("alert-local"));

    rt.block_on(async {
        let alert = watcher.observe_with(
            Source::function(&charge)
                .filters(json!({ "input.amount": { "$gte": 500 }, "caller.worker_name": { "$prefix": "gocaller" } }))
                .capture([Capture::Input, Capture::Output, Capture::Caller]),
            format!("{p}::alert"),
            ObserverOptions::default().metadata(json!({ "team": "payments" })),
        );
        let local = watcher.observe(
            Source::function(&charge).filters(json!({ "caller.function_id": { "$eq": format!("{p}::local-call") } })),
            format!("{p}::alert-local"),
        );
        for h in [&alert, &local] {
            tokio::time::timeout(Duration::from_secs(10), h.ready()).await.expect("ready in time").expect("active");
        }
        for (src, tgt) in [
            (Source::function(&charge), charge.clone()),
            (Source::function(&charge).filters(json!({ "input.x": "literal" })), format!("{p}::alert")),
        ] {
            let h = watcher.observe(src, tgt);
            match tokio::time::timeout(Duration::from_secs(10), h.ready()).await.expect("an answer") {
                Ok(()) => out("REFUSED none"),
                Err(e) => out(&format!("REFUSED {}", e.invocation_error().map(|i| i.code.clone()).unwrap_or_default())),
            }
        }
        out(&format!("OBSERVING {}", json!({ "alert": alert.id() })));
        out("READY");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    });
    for c in [owner, watcher] {
        let handle = std::thread::spawn(move || c.shutdown());
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while !handle.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    std::process::exit(0);
}
