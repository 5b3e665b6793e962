//! Progress reporting as an interface of the library: the CLI draws bars, tests stay silent.

use crate::archive::{Failure, Status};

pub trait Progress: Send + Sync {
    /// The run is about to start this many components.
    fn planned(&self, _components: usize) {}
    /// A component is done on all its hosts (its status over them).
    fn component_done(&self, _component: &str, _status: Status) {}
    /// A component started on a host.
    fn started(&self, _component: &str, _host: &str) {}
    /// A step started.
    fn step(&self, _component: &str, _host: &str, _step: &str) {}
    /// Bytes received from the host for this component.
    fn bytes(&self, _component: &str, _host: &str, _n: u64) {}
    /// The component finished on the host, with these failures (each to be shown once).
    fn finished(&self, _component: &str, _host: &str, _status: Status, _errors: &[Failure]) {}
    /// A remark worth showing (warnings).
    fn message(&self, _text: &str) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}
