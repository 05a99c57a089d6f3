#!/usr/bin/env python3
"""Injects one-line faults into error-handling code and checks that the test
named for each fails. Not part of CI (each fault costs a test run); run it
after changing a failure path or its test:

    python3 scripts/faults.py            # every fault
    python3 scripts/faults.py reattach   # faults whose name contains "reattach"

Each fault is (name, file, original text, faulty text, test regexp, package).
The file is restored after every run, also on interrupt.
"""
import os
import subprocess
import sys

FAULTS = [
    ("reattach-token-unchecked", "engine/conn.go",
     "subtle.ConstantTimeCompare([]byte(old.token), []byte(m.ReattachToken)) != 1", "false",
     "TestReattachWrongTokenRefused", "./engine/"),
    ("malformed-result-ignored", "engine/conn.go",
     "\t\t\tw.e.inv.Pending().Complete(env.InvocationID, w.id, invocation.Result{Err: &wire.ErrorBody{\n"
     "\t\t\t\tCode: wire.CodeInvocationError, Message: \"the executing worker sent a malformed invocationresult: \" + err.Error()}})",
     "", "TestMalformedResultFailsCallerAtOnce", "./engine/"),
    ("oversized-result-ignored", "engine/conn.go",
     "\t\tw.e.inv.Pending().Complete(id, w.id, invocation.Result{Err: &wire.ErrorBody{Code: wire.CodeInvocationError, Message: \"result \" + msg}})",
     "", "TestOversizedResultFailsCallerAtOnce", "./engine/"),
    ("unregisterfunction-ignored", "engine/namespace.go",
     "\t\tif ok, promoted := e.reg.UnregisterFunction(ns, id, w); ok {",
     "\t\tif ok, promoted := false, (*registry.Function)(nil); ok {",
     "TestUnregisterFunctionOverWire", "./engine/"),
    ("unregisterfunction-any-owner", "internal/registry/registry.go",
     "if f, ok := r.functions[k]; ok && f.Owner == owner {", "if _, ok := r.functions[k]; ok {",
     "TestUnregisterFunctionOverWire", "./engine/"),
    ("unregistertriggertype-ignored", "engine/namespace.go",
     "\t\tif e.reg.UnregisterTriggerType(tns, m.ID, w) {\n\t\t\tw.log.Info(\"trigger type unregistered\", \"trigger_type\", m.ID, \"namespace\", tns)\n\t\t}",
     "\t\t_ = tns",
     "TestUnregisterTriggerTypeOverWire", "./engine/"),
    ("no-503-after-shutdown", "engine/conn.go",
     "\tif e.isShuttingDown() {", "\tif false {",
     "TestNewWorkerRefusedAfterShutdown", "./engine/"),
    ("labels-unsanitised", "engine/builtins.go",
     "\ts = strings.Map(", "\treturn s\n\ts = strings.Map(",
     "TestWorkerLabelsSanitised", "./engine/"),
    ("register-trigger-unvalidated", "engine/builtins.go",
     "\tif in.TriggerType == \"\" || in.FunctionID == \"\" {", "\tif false {",
     "TestRegisterTriggerValidation", "./engine/"),
    ("register-trigger-verdict-skipped", "engine/builtins.go",
     "\tif ack != nil {\n\t\ttimer", "\tif false {\n\t\ttimer",
     "TestRegisterTriggerValidation", "./engine/"),
    ("functions-list-prefix-ignored", "engine/discovery.go",
     "if in.Prefix != \"\" && !strings.HasPrefix(f.ID, in.Prefix) {", "if false {",
     "TestDiscoveryFilters", "./engine/"),
    ("functions-list-worker-ignored", "engine/discovery.go",
     "if in.Worker != \"\" && name != in.Worker && ownerOf(f.Owner) != in.Worker {", "if false {",
     "TestDiscoveryFilters", "./engine/"),
    ("functions-list-workers-ignored", "engine/discovery.go",
     "if len(in.Workers) > 0 && !contains(in.Workers, name) && !contains(in.Workers, ownerOf(f.Owner)) {", "if false {",
     "TestDiscoveryFilters", "./engine/"),
    ("functions-list-search-unsorted", "engine/discovery.go",
     "\tif search != \"\" { // id hits first", "\tif false {",
     "TestDiscoveryFilters", "./engine/"),
    ("functions-info-batch-error-dropped", "engine/discovery.go",
     "functionLookupError{FunctionID: id, Error: \"not_found\"}", "functionLookupError{FunctionID: id}",
     "TestDiscoveryFilters", "./engine/"),
    ("triggers-list-worker-ignored", "engine/discovery.go",
     "if in.Worker != \"\" && s.WorkerName != in.Worker {", "if false {",
     "TestDiscoveryFilters", "./engine/"),
    ("triggers-list-internal-shown", "engine/discovery.go",
     "if !in.IncludeInternal && strings.HasPrefix(tt.ID, \"engine::\") {", "if false {",
     "TestDiscoveryFilters", "./engine/"),
    ("sdk-offline-ctx-ignored", "call.go",
     "\t\tcase <-ctx.Done():\n\t\t\treturn nil, ctxError(ctx, functionID)\n\t\tcase <-timeout:", "\t\tcase <-timeout:",
     "TestOfflineCallHonoursContext", "."),
    ("sdk-offline-default-timeout-ignored", "call.go",
     "\t\t\tif !expires.IsZero() {", "\t\t\tif false {",
     "TestOfflineCallHonoursDefaultTimeout", "."),
    ("sdk-close-waits-forever", "client.go",
     "\t\t\tcase <-ct.C:\n\t\t\t\ts.conn.Abort()", "\t\t\tcase <-make(chan time.Time):\n\t\t\t\ts.conn.Abort()",
     "TestCloseWithSilentEngine", "."),
    ("sdk-dial-status-dropped", "client.go",
     "return nil, fmt.Errorf(\"%w (HTTP %s)\", err, resp.Status)", "return nil, err",
     "TestConnectReportsHTTPStatus", "."),
    ("sdk-offline-calls-not-queued", "call.go",
     "\t\tcase <-up:\n", "\t\tcase <-up:\n\t\t\treturn nil, ErrClosed\n",
     "TestCallsWaitForReconnect", "."),
    ("sdk-failed-send-not-retried", "call.go",
     "\t\t\tp.release()\n\t\t\tp = nil\n\t\t\tif ctx.Err() != nil {", "\t\t\tp.release()\n\t\t\treturn nil, err\n\t\t\tif ctx.Err() != nil {",
     "TestFailedSendRetriedOnNextSocket/call", "."),
    ("sdk-failed-send-spins", "call.go",
     "\t\t\tc.sendFailed(ctx, s)\n\t\t}\n\t}\n", "\t\t}\n\t}\n",
     "TestFailedSendRetriedOnNextSocket/call", "."),
    ("sdk-void-failed-send-not-retried", "call.go",
     "\t\t// The socket closed under us", "\t\treturn ErrClosed\n\t\t// The socket closed under us",
     "TestFailedSendRetriedOnNextSocket/void", "."),
    ("sdk-void-failed-send-spins", "call.go",
     "\t\tc.sendFailed(ctx, s)\n\t}\n}\n", "\t}\n}\n",
     "TestFailedSendRetriedOnNextSocket/void", "."),
    ("route-condition-false-ignored", "internal/httptrigger/payload.go",
     "if string(bytes.TrimSpace(res.Value)) == \"false\" {", "if false {",
     "TestRouteCondition", "./internal/httptrigger/"),
    ("route-condition-error-ignored", "internal/httptrigger/payload.go",
     "\t\tif res.Err != nil {\n\t\t\tx.outcome = \"condition: \"", "\t\tif false {\n\t\t\tx.outcome = \"condition: \"",
     "TestRouteCondition", "./internal/httptrigger/"),
    ("middleware-respond-ignored", "internal/httptrigger/payload.go",
     "out.Action != \"respond\" {", "true {",
     "TestRouteMiddleware", "./internal/httptrigger/"),
    ("middleware-error-ignored", "internal/httptrigger/payload.go",
     "\t\tif res.Err != nil {\n\t\t\tx.outcome = \"middleware \"", "\t\tif false {\n\t\t\tx.outcome = \"middleware \"",
     "TestRouteMiddleware", "./internal/httptrigger/"),
    ("prehandler-not-found-passed-on", "internal/httptrigger/payload.go",
     "if r.Err != nil && r.Err.Code == wire.CodeFunctionNotFound {", "if false {",
     "TestPreHandlerCallFailures", "./internal/httptrigger/"),
    ("prehandler-timeout-unanswered", "internal/httptrigger/payload.go",
     "\t\twriteError(&x.w, http.StatusGatewayTimeout, wire.CodeTimeout, fmt.Sprintf(\"function %s did not answer within %s\", fn, x.s.cfg.Timeout))", "",
     "TestPreHandlerCallFailures", "./internal/httptrigger/"),
    ("prehandler-client-gone-ignored", "internal/httptrigger/payload.go",
     "\tcase <-ctx.Done():\n\t\tx.outcome = \"client gone\"", "\tcase <-make(chan struct{}):\n\t\tx.outcome = \"client gone\"",
     "TestPreHandlerCallFailures", "./internal/httptrigger/"),
    ("prehandler-shutdown-unanswered", "internal/httptrigger/payload.go",
     "\t\twriteError(&x.w, http.StatusServiceUnavailable, wire.CodeEngineShuttingDown, \"engine shutting down\")\n\t}\n\treturn invocation.Result{}, false", "\t}\n\treturn invocation.Result{}, false",
     "TestPreHandlerCallFailures", "./internal/httptrigger/"),
    ("sdk-masked-server-frame-accepted", "reader.go",
     "\t\tcase h.Masked:\n\t\t\treturn nil, r.fail(\"masked server frame\")\n", "",
     "TestMaskedServerFrameRefused", "."),
    ("http-param-separator-decoded", "internal/httptrigger/router.go",
     "\t\tcase '/', '\\\\', '%', 0:", "\t\tcase 1:",
     "TestDecodeParam|TestRouting", "./internal/httptrigger/"),
    ("http-param-dot-segment-decoded", "internal/httptrigger/router.go",
     "if d := string(out); d != \".\" && d != \"..\" {", "if d := string(out); true {",
     "TestDecodeParam|TestRouting", "./internal/httptrigger/"),
    ("http-request-cap-ignored", "internal/httptrigger/server.go",
     "if s.active.Add(1) > int64(s.cfg.MaxConcurrent) {", "if s.active.Add(1) < 0 {",
     "TestMaxConcurrentRequests", "./internal/httptrigger/"),
    ("http-json-budget-ignored", "internal/httptrigger/server.go",
     "if b.used.Add(n) > b.max {", "if b.used.Add(n) < 0 {",
     "TestJSONBodyBudget", "./internal/httptrigger/"),
    ("http-json-budget-not-returned", "internal/httptrigger/exchange.go",
     "\t\tdefer s.jsonHeld.give(held) // runs last: after the pusher is done with b\n", "",
     "TestJSONBodyBudget", "./internal/httptrigger/"),
    ("http-shutdown-closes-first", "engine/engine.go",
     "\t\te.drainHTTP(ctx)\n", "\t\t_ = e.httpSrv.Close()\n\t\te.http.Close()\n",
     "TestShutdownDrainsHTTP", "./engine/"),
    ("http-shutdown-no-503-at-deadline", "engine/engine.go",
     "\te.http.Close()\n\t// The handlers return once", "\t// The handlers return once",
     "TestShutdownDrainsHTTP", "./engine/"),
    ("http-drain-waits-for-silent-conns", "engine/engine.go",
     "\t\t\tif e.http.Active() == 0 {\n\t\t\t\tstop()", "\t\t\tif false {\n\t\t\t\tstop()",
     "TestShutdownIgnoresSilentHTTPConnections", "./engine/"),
    ("http-route-takeover-allowed", "internal/httptrigger/router.go",
     "old.triggerID != rt.triggerID && old.holder != rt.holder {", "false {",
     "TestRouteHeldByAnotherWorker", "./internal/httptrigger/"),
    ("channel-new-message-in-fragment", "internal/channels/frames.go",
     "\t\t\tif started {\n\t\t\t\treturn f, fr.endMessage(&protocolError{\"new message inside a fragmented one\"})",
     "\t\t\tif false {\n\t\t\t\treturn f, fr.endMessage(&protocolError{\"new message inside a fragmented one\"})",
     "TestNewMessageInsideFragmentedOne", "./internal/channels/"),
    ("channel-shutdown-deadline-ignored", "internal/channels/hub.go",
     "\tcase <-done:\n\t\treturn nil\n\tcase <-ctx.Done():\n\t}", "\tcase <-done:\n\t\treturn nil\n\t}",
     "TestShutdownHonoursDeadline", "./internal/channels/"),
    ("http-response-channel-error-200", "internal/httptrigger/exchange.go",
     "writeError(&x.w, http.StatusServiceUnavailable, \"CHANNELS_UNAVAILABLE\", \"cannot open the response channel: \"+err.Error())",
     "x.w.WriteHeader(http.StatusOK)",
     "TestResponseChannelFailure", "./internal/httptrigger/"),
    ("sse-event-not-flushed", "http_test.go",
     "\t\t\tfmt.Fprintf(w, \"id: %d\\nevent: progress\\ndata: {\\\"step\\\":%d}\\n\\n\", i, i)\n\t\t\tw.(http.Flusher).Flush()",
     "\t\t\tfmt.Fprintf(w, \"id: %d\\nevent: progress\\ndata: {\\\"step\\\":%d}\\n\\n\", i, i)",
     "TestHTTPServerSentEvents", "."),
    ("sse-headers-not-flushed", "http_test.go",
     "\t\tw.WriteHeader(http.StatusOK)\n\t\tw.(http.Flusher).Flush()\n\t\tfor i := 1; i <= events; i++ {\n\t\t\tselect {\n\t\t\tcase <-release:",
     "\t\tw.WriteHeader(http.StatusOK)\n\t\tfor i := 1; i <= events; i++ {\n\t\t\tselect {\n\t\t\tcase <-release:",
     "TestHTTPServerSentEvents", "."),
    ("sdk-upload-buffered-whole", "http.go",
     "func (b *requestBody) WriteTo(w io.Writer) (int64, error) { return b.r.WriteTo(w) }",
     "func (b *requestBody) WriteTo(w io.Writer) (int64, error) {\n\tall, err := io.ReadAll(b.r)\n\tif err != nil {\n\t\treturn 0, err\n\t}\n\tn, err := w.Write(all)\n\treturn int64(n), err\n}",
     "TestHTTPStreamedUpload", "."),
    ("connect-retries-refused-credentials", "client.go",
     "func permanentDialErr(err error) bool {\n",
     "func permanentDialErr(err error) bool {\n\treturn false\n",
     "TestConnectFailsFastOnRefusedCredentials|TestTLSConnectWithCustomCA", "."),
]


def run(fault):
    name, path, old, new, test, pkg = fault
    with open(path) as f:
        orig = f.read()
    if orig.count(old) != 1:
        return "STALE (the original text is not in %s exactly once)" % path
    try:
        with open(path, "w") as f:
            f.write(orig.replace(old, new, 1))
        r = subprocess.run(["go", "test", "-count=1", "-run", test, pkg],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    finally:
        with open(path, "w") as f:
            f.write(orig)
    return "killed" if r.returncode != 0 else "SURVIVED"


def main():
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    want = sys.argv[1] if len(sys.argv) > 1 else ""
    bad = 0
    for fault in FAULTS:
        if want not in fault[0]:
            continue
        verdict = run(fault)
        print("%-40s %s" % (fault[0], verdict))
        bad += verdict != "killed"
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
