//! The `postgres` destination (being built: issue 5).

use std::sync::Arc;

use super::{BuildContext, Destination};
use crate::config::PostgresDestinationConfig;
use crate::error::{Error, Result};

pub async fn build(ctx: &BuildContext<'_>, _cfg: &PostgresDestinationConfig) -> Result<Arc<dyn Destination>> {
    Err(Error::config(format!("destination `{}`: type postgres is not available in this build yet", ctx.config.name)))
}
