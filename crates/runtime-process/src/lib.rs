//! Functions as OS processes speaking the AWS Lambda Runtime API.
//!
//! `nimbus-runtime-process` implements [`nimbus_core::Runtime`] for the `nodejs`,
//! `python` and `provided` runtimes: each instance is one process, started in the
//! function's code directory with a clean environment (the Lambda variables, dummy
//! credentials, `AWS_ENDPOINT_URL` pointing at the services endpoint, the manifest's
//! `environment`), and served the Runtime API on a loopback port of its own
//! ([`api`]). Node.js and Python functions run under bootstrap shims shipped inside the
//! binary ([`shims`]); `provided` functions run their own `bootstrap`.
//!
//! It does not decide when instances start or stop: that is the dispatcher's job.

mod api;
mod instance;
pub mod shims;

use std::{path::PathBuf, sync::Arc};

use nimbus_core::{BoxFuture, FunctionSpec, Instance, Runtime, StartError};

pub use instance::ProcessInstance;

/// Settings every process instance shares.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// The services endpoint URL functions reach AWS APIs at.
    pub services_endpoint: String,
    /// The region reported to functions.
    pub region: String,
    /// Where the shims were written ([`shims::install`]).
    pub shims_dir: PathBuf,
    /// Where each Python function's requirements are installed (`DIR/NAME`), if anywhere.
    pub python_deps: Option<PathBuf>,
    /// Where the AWS SDK for Python (boto3) that Python functions may import without
    /// bundling it was installed, as Lambda's Python runtime provides it; if anywhere.
    pub python_sdk: Option<PathBuf>,
    /// The `node_modules` of the AWS SDK for JavaScript v3 that Node.js functions may
    /// import without bundling it, as Lambda's Node.js runtimes provide it; if anywhere.
    pub node_sdk: Option<PathBuf>,
    /// Where each instance's private temporary directory is made (`ROOT/ID`, its
    /// `TMPDIR`), and removed when the instance ends, as Lambda's `/tmp` belongs to one
    /// execution environment; without one, instances share the host's.
    pub tmp_root: Option<PathBuf>,
}

/// The process runtime.
#[derive(Debug, Clone)]
pub struct ProcessRuntime {
    config: Arc<ProcessConfig>,
}

impl ProcessRuntime {
    /// A runtime with `config`.
    pub fn new(config: ProcessConfig) -> ProcessRuntime {
        ProcessRuntime {
            config: Arc::new(config),
        }
    }
}

impl Runtime for ProcessRuntime {
    fn start(
        &self,
        function: Arc<FunctionSpec>,
    ) -> BoxFuture<'_, Result<Box<dyn Instance>, StartError>> {
        let config = Arc::clone(&self.config);
        Box::pin(async move {
            let instance = ProcessInstance::start(config, function).await?;
            Ok(Box::new(instance) as Box<dyn Instance>)
        })
    }
}
