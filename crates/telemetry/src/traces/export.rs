//! The HTTP client the OTLP exporter sends batches with.
//!
//! The SDK's batch span processor runs on a thread of its own and drives the exporter's
//! futures without a tokio runtime, while the HTTP client needs one. So the client owns a
//! small runtime on a thread of its own and runs each request there: exports never touch
//! the node's runtime, and they keep working while that runtime shuts down (the final
//! flush).

use std::time::Duration;

use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};

/// Longest an export request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends the exporter's requests on a runtime of its own.
#[derive(Debug)]
pub(crate) struct ExportClient {
    client: reqwest::Client,
    handle: tokio::runtime::Handle,
    /// Ends the runtime's thread when the client is dropped.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl ExportClient {
    /// Starts the client's thread.
    pub(crate) fn start() -> std::io::Result<ExportClient> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("nimbus-otlp".to_owned())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(std::io::Error::other)?;
        Ok(ExportClient {
            client,
            handle,
            _stop: stop,
        })
    }
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let sent = self.handle.spawn(async move {
            let (parts, body) = request.into_parts();
            let response = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            let mut out = Response::new(body);
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            Ok::<_, reqwest::Error>(out)
        });
        Ok(sent.await??)
    }
}
