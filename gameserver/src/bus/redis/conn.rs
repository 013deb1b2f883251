//! Redis failures as bus errors, shared by the bus and its parts.

use crate::bus::BusError;

/// Every Redis failure is reported as the bus being unavailable.
pub(crate) fn unavailable(e: redis::RedisError) -> BusError {
    BusError::Unavailable(e.to_string())
}
