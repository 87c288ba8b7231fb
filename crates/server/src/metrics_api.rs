//! `GET /metrics` on the services endpoint: the node's Prometheus metrics
//! ([`nimbus_telemetry::metrics`]), or a 404 saying they are off.
//!
//! The gauges that describe state (each function's warm and busy instances, concurrent
//! executions, admission queue, async backlog and the age of its oldest event) are read
//! from the dispatcher and the async queue at scrape time, so that nothing on a
//! request's path has to keep them.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use nimbus_dispatch::Dispatcher;
use nimbus_events::AsyncQueue;
use nimbus_telemetry::metrics::{CONTENT_TYPE, Metrics};
use serde_json::json;

/// How often recorded histogram samples are folded into buckets between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// What a scrape reads.
struct Exposition {
    metrics: Metrics,
    dispatcher: Arc<Dispatcher>,
    events: Arc<AsyncQueue>,
}

/// The `/metrics` route; `metrics` is `None` when metrics are off. Starts the upkeep task
/// when they are on.
pub(crate) fn router(
    metrics: Option<Metrics>,
    dispatcher: Arc<Dispatcher>,
    events: Arc<AsyncQueue>,
) -> Router {
    let Some(metrics) = metrics else {
        return Router::new().route("/metrics", get(off));
    };
    let upkeep = metrics.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(UPKEEP_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            upkeep.run_upkeep();
        }
    });
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(Arc::new(Exposition {
            metrics,
            dispatcher,
            events,
        }))
}

async fn off() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({
            "message": "metrics are off on this node (--metrics off or NIMBUS_METRICS=off)"
        })),
    )
        .into_response()
}

async fn scrape(State(exposition): State<Arc<Exposition>>) -> Response {
    // The async queue and /proc are read from files: off the async workers.
    let rendered = tokio::task::spawn_blocking(move || {
        exposition.collect();
        exposition.metrics.render()
    })
    .await;
    match rendered {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering the metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({ "message": "rendering the metrics failed" })),
            )
                .into_response()
        }
    }
}

impl Exposition {
    /// Sets the state gauges from the parts' own counts.
    fn collect(&self) {
        let now_ms = nimbus_events::now_ms();
        for stats in self.dispatcher.stats() {
            let function = stats.function;
            metrics::gauge!("nimbus_concurrent_executions", "function" => function.clone())
                .set(stats.concurrent as f64);
            metrics::gauge!("nimbus_instances", "function" => function.clone(), "state" => "warm")
                .set(stats.warm as f64);
            metrics::gauge!("nimbus_instances", "function" => function.clone(), "state" => "busy")
                .set(stats.busy as f64);
            metrics::gauge!("nimbus_queue_length", "function" => function.clone())
                .set(stats.waiting as f64);
            match self.events.backlog(&function) {
                Ok((queued, oldest)) => {
                    let age_ms = oldest.map_or(0, |at| now_ms.saturating_sub(at));
                    metrics::gauge!("nimbus_async_backlog", "function" => function.clone())
                        .set(queued as f64);
                    metrics::gauge!("nimbus_async_oldest_event_age_seconds", "function" => function)
                        .set(age_ms as f64 / 1000.0);
                }
                Err(e) => {
                    tracing::warn!(%function, error = %e, "cannot read the async backlog for metrics");
                }
            }
        }
    }
}
