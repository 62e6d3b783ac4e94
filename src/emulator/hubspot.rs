//! An emulator of the hubspot API (being built: issue 5).

use crate::error::{Error, Result};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Port; 0 picks a free one. The URL is printed as the first line of output.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
}

pub async fn run_cli(_args: &Args) -> Result<i32> {
    Err(Error::other("the hubspot emulator is not available in this build yet"))
}
