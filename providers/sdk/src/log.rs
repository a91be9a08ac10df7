//! Logging to the host. The host tags lines with the provider and pod and redacts credentials it
//! recognises, but a provider must still never log secret values or tokens.

use crate::bindings::secrets_store::provider::log::{Level, log};

pub fn trace(message: &str) {
    log(Level::Trace, message);
}
pub fn debug(message: &str) {
    log(Level::Debug, message);
}
pub fn info(message: &str) {
    log(Level::Info, message);
}
pub fn warn(message: &str) {
    log(Level::Warn, message);
}
pub fn error(message: &str) {
    log(Level::Error, message);
}
