//! What both tests are configured with, so that neither test module depends on the other.

use serde::Serialize;

/// Which threads touch the memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// vCPUs of a KVM guest.
    Kvm,
    /// Host threads (`--no-kvm`).
    Host,
}
