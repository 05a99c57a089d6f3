//! The worker for the cluster tests (../cluster_modules_test.go), run as
//! `worker cluster_modules`: the Rust counterpart of
//! node-0.22.1/cluster_modules.mjs and python/cluster_modules.py (same env,
//! same output). Several copies run, one per engine node, with the same
//! prefix; env NODE_LABEL names the copy (worker name `<prefix>-cluster-<label>`).
//!
//! <prefix>::cl_http behind POST /<prefix>/cl/:name answers
//!   {served_by: NODE_LABEL, name, got: body} as the function's result.
//! <prefix>::cl_tick behind the cron "* * * * * *" prints CRON <scheduled_time>.
//! <prefix>::cl_state behind a state binding on scope <prefix> prints
//!   STATE <event_type> <key>.
//! <prefix>::cl_topic behind a subscribe binding on topic <prefix>-topic
//!   prints TOPIC <data.n>.
//! <prefix>::cl_stream behind a stream binding on stream <prefix>-board
//!   prints STREAM <event.type> <id>.
//!
//! The triggers are the SDK's typed builtin_triggers::IIITrigger configs
//! through IIIClient::register_trigger: 0.25 deprecates both in favour of
//! observe(), but says to keep using them for the http, cron, state, stream
//! and pubsub trigger types until their providers ship source functions.
#![allow(deprecated)]

use iii_helpers::stream::StreamTriggerConfig;
use iii_sdk::builtin_triggers::{
    CronTriggerConfig, HttpMethod, HttpTriggerConfig, IIITrigger, StateTriggerConfig, SubscribeTriggerConfig,
};
use iii_sdk::{Error, IIIClient, RegisterFunction};
use serde_json::{json, Value};

use crate::out;

/// `v` as text: a string as is, anything else as JSON (null when absent).
fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => "null".to_string(),
    }
}

fn bind(iii: &IIIClient, trigger: IIITrigger, function_id: &str) {
    if let Err(err) = iii.register_trigger(trigger.for_function(function_id)) {
        eprintln!("register_trigger for {function_id}: {err}");
        std::process::exit(1);
    }
}

pub fn register(iii: &IIIClient, prefix: &str, label: &str) {
    let served_by = label.to_string();
    iii.register_function(
        format!("{prefix}::cl_http"),
        RegisterFunction::new_async(move |req: Value| {
            let served_by = served_by.clone();
            async move {
                let name = req.pointer("/path_params/name").cloned().unwrap_or(Value::Null);
                let got = req.get("body").filter(|b| b.is_object()).cloned().unwrap_or(Value::Null);
                Ok::<Value, Error>(json!({
                    "status_code": 200,
                    "headers": { "content-type": "application/json" },
                    "body": { "served_by": served_by, "name": name, "got": got },
                }))
            }
        }),
    );
    bind(iii, IIITrigger::Http(HttpTriggerConfig::new(format!("/{prefix}/cl/:name")).method(HttpMethod::Post)), &format!("{prefix}::cl_http"));

    iii.register_function(
        format!("{prefix}::cl_tick"),
        RegisterFunction::new_async(|ev: Value| async move {
            out(&format!("CRON {}", text(ev.get("scheduled_time"))));
            Ok::<Value, Error>(Value::Null)
        }),
    );
    bind(iii, IIITrigger::Cron(CronTriggerConfig::new("* * * * * *")), &format!("{prefix}::cl_tick"));

    iii.register_function(
        format!("{prefix}::cl_state"),
        RegisterFunction::new_async(|ev: Value| async move {
            out(&format!("STATE {} {}", text(ev.get("event_type")), text(ev.get("key"))));
            Ok::<Value, Error>(Value::Null)
        }),
    );
    bind(iii, IIITrigger::State(StateTriggerConfig::new().scope(prefix)), &format!("{prefix}::cl_state"));

    iii.register_function(
        format!("{prefix}::cl_topic"),
        RegisterFunction::new_async(|data: Value| async move {
            out(&format!("TOPIC {}", text(data.get("n"))));
            Ok::<Value, Error>(Value::Null)
        }),
    );
    bind(iii, IIITrigger::Subscribe(SubscribeTriggerConfig::new(format!("{prefix}-topic"))), &format!("{prefix}::cl_topic"));

    iii.register_function(
        format!("{prefix}::cl_stream"),
        RegisterFunction::new_async(|msg: Value| async move {
            out(&format!("STREAM {} {}", text(msg.pointer("/event/type")), text(msg.get("id"))));
            Ok::<Value, Error>(Value::Null)
        }),
    );
    bind(iii, IIITrigger::Stream(StreamTriggerConfig::new().stream_name(format!("{prefix}-board"))), &format!("{prefix}::cl_stream"));
}
