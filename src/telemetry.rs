//! OpenTelemetry traces, exported over OTLP/HTTP when the standard
//! variables ask for it (`OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; also honoured:
//! `OTEL_EXPORTER_OTLP_PROTOCOL` = `http/protobuf` (default) or `http/json`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
//! `OTEL_SERVICE_NAME` (default `mcp-firewall`), `OTEL_BSP_*`,
//! `OTEL_SDK_DISABLED`). gRPC is not built in.
//!
//! Spans: one per client request (named after the method, with
//! `rpc.method`, `rpc.jsonrpc.request_id` and, for a call, `mcp.tool`), with children
//! `decide` (`mcp.decision`, `mcp.decision_id`, `mcp.server`, `mcp.tool`),
//! `hold` (a call waiting for a human) and `forward` (the upstream request).
//! A W3C `traceparent` (and `tracestate`) in the request's `_meta` is
//! continued; the forwarded request's `_meta.traceparent` names the
//! `forward` span, so an upstream that traces continues the same trace.
//! Spans are exported whatever `RUST_LOG` says (the firewall's own, at info
//! and above); without the variables nothing is set up.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::Value;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The spans every call opens (the request's, `decide`, `forward`; their
/// names as the `info_span!`s in `proxy` give them). The log shows them
/// only at debug; traces always carry them.
pub const CALL_SPANS: [&str; 3] = ["mcp.request", "decide", "forward"];

/// The exporter, kept to flush it when the process ends.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Export what is still buffered.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("mcp-firewall: flushing traces failed: {e}");
        }
    }
}

/// Whether the environment asks for OTLP trace export.
fn configured() -> bool {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The tracing layer that exports spans, when configured.
pub fn layer<S>() -> Option<(
    tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
    Telemetry,
)>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    if !configured() {
        return None;
    }
    let protocol = match std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .as_deref()
    {
        Ok("http/json") => Protocol::HttpJson,
        _ => Protocol::HttpBinary,
    };
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("mcp-firewall: traces are not exported: {e}");
            return None;
        }
    };
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "mcp-firewall".into());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build();
    let tracer = provider.tracer("mcp-firewall");
    Some((
        tracing_opentelemetry::layer().with_tracer(tracer),
        Telemetry { provider },
    ))
}

/// Continue the caller's trace: the `traceparent`/`tracestate` of a
/// request's `_meta` become `span`'s parent.
pub fn continue_from(span: &tracing::Span, params: &Value) {
    let Some(meta) = params.get("_meta").and_then(Value::as_object) else {
        return;
    };
    let mut carrier = HashMap::new();
    for key in ["traceparent", "tracestate"] {
        if let Some(v) = meta.get(key).and_then(Value::as_str) {
            carrier.insert(key.to_string(), v.to_string());
        }
    }
    if carrier.contains_key("traceparent") {
        let cx = TraceContextPropagator::new().extract(&carrier);
        if cx.span().span_context().is_valid() {
            let _ = span.set_parent(cx);
        }
    }
}

/// The `traceparent` (and `tracestate`) naming the current span, when
/// traces are exported.
pub fn current_context() -> Option<HashMap<String, String>> {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.contains_key("traceparent").then_some(carrier)
}
