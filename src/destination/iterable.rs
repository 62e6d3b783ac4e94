//! The `iterable` destination (being built: issue 5).

use std::sync::Arc;

use super::{BuildContext, Destination};
use crate::config::IterableConfig;
use crate::error::{Error, Result};

pub async fn build(ctx: &BuildContext<'_>, _cfg: &IterableConfig) -> Result<Arc<dyn Destination>> {
    Err(Error::config(format!("destination `{}`: type iterable is not available in this build yet", ctx.config.name)))
}
