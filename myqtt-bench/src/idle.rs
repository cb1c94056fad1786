//! The idle-connection mode: opens many connections that stay idle and
//! reports how much the broker's resident memory grew per connection.
//!
//! Design: the broker's `VmRSS` is read before the first connection and
//! again once every CONNACK has come and a short settling time has passed
//! (a broker may allocate a connection's buffers after answering it). The
//! difference over the connections opened is the cost of one idle
//! connection, allocator slack included.

use std::sync::Arc;
use std::time::{Duration, Instant};

use myqtt_core::Ctx;
use myqtt_core::client::{Conn, ConnectOptions};
use tokio::sync::Semaphore;

use crate::args::Args;
use crate::error::BenchError;
use crate::sys;

/// Files this process needs besides one socket per connection.
const SPARE_FILES: u64 = 64;
/// Wait after the last CONNACK before reading the RSS again.
const SETTLE: Duration = Duration::from_millis(500);

/// What an idle-connection run measured.
#[derive(Debug, Clone, Default)]
pub struct IdleReport {
    /// Connections asked for.
    pub requested: usize,
    /// Connections that got a successful CONNACK.
    pub opened: usize,
    /// Of those, still connected when the RSS was read.
    pub still_open: usize,
    /// Connections that failed.
    pub failed: usize,
    /// The first failure, as text.
    pub first_error: Option<String>,
    /// The broker's RSS before, in bytes.
    pub rss_before: u64,
    /// The broker's RSS with every connection open, in bytes.
    pub rss_after: u64,
    /// Seconds taken to open them all.
    pub connect_secs: f64,
    /// This process's open-file limit during the run.
    pub fd_limit: u64,
    /// The broker's open-file limit, when readable.
    pub broker_fd_limit: Option<u64>,
}

impl IdleReport {
    /// Broker RSS growth per open connection, in bytes (negative if the
    /// broker's RSS shrank).
    pub fn bytes_per_connection(&self) -> f64 {
        if self.opened == 0 {
            return 0.0;
        }
        #[allow(clippy::cast_precision_loss)]
        let growth = self.rss_after as f64 - self.rss_before as f64;
        #[allow(clippy::cast_precision_loss)]
        let n = self.opened as f64;
        growth / n
    }
}

/// Opens `count` idle connections to the broker whose process is
/// `broker_pid`, reads its RSS, and closes them.
pub fn run(args: &Args, count: usize, broker_pid: u32) -> Result<IdleReport, BenchError> {
    let need = count as u64 + SPARE_FILES;
    let fd_limit = sys::ensure_open_files(need).map_err(BenchError::Setup)?;
    let broker_fd_limit = sys::open_file_limit(broker_pid);
    let rss_before = sys::vm_rss(broker_pid).map_err(BenchError::Setup)?;
    let ctx = Ctx::builder()
        .worker_threads(args.threads)
        .shutdown_grace(Duration::from_secs(5))
        .build()?;
    let report = ctx.block_on(open_all(&ctx, args, count, broker_pid));
    ctx.exit();
    let mut report = report?;
    report.rss_before = rss_before;
    report.fd_limit = fd_limit;
    report.broker_fd_limit = broker_fd_limit;
    Ok(report)
}

async fn open_all(
    ctx: &Ctx,
    args: &Args,
    count: usize,
    broker_pid: u32,
) -> Result<IdleReport, BenchError> {
    let pid = std::process::id();
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.connect_parallel));
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let Ok(permit) = Arc::clone(&gate).acquire_owned().await else {
            break;
        };
        let opts = ConnectOptions::new(args.host.clone(), args.port)
            .protocol(args.protocol)
            .client_id(format!("mqb-{pid}-i{i}"))
            .keep_alive(args.keep_alive)
            .connect_timeout(Duration::from_secs(30));
        let task_ctx = ctx.clone();
        tasks.push(ctx.spawn(async move {
            let r = Conn::connect(&task_ctx, opts).await;
            drop(permit);
            r
        }));
    }
    let mut report = IdleReport {
        requested: count,
        ..IdleReport::default()
    };
    let mut conns = Vec::with_capacity(count);
    for t in tasks {
        match t.await {
            Ok(Ok(c)) => conns.push(c),
            Ok(Err(e)) => {
                report.failed += 1;
                report.first_error.get_or_insert_with(|| e.to_string());
            }
            Err(e) => {
                report.failed += 1;
                report.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    report.connect_secs = started.elapsed().as_secs_f64();
    report.opened = conns.len();
    tokio::time::sleep(SETTLE).await;
    let rss_after = sys::vm_rss(broker_pid);
    report.still_open = conns.iter().filter(|c| c.is_connected()).count();
    let closing: Vec<_> = conns.iter().map(Conn::close).collect();
    for c in closing {
        let _ = c.wait_async(Duration::from_secs(5)).await;
    }
    report.rss_after = rss_after.map_err(BenchError::Setup)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_shared_among_the_connections_opened() {
        let r = IdleReport {
            opened: 1000,
            rss_before: 10 << 20,
            rss_after: (10 << 20) + 2_048_000,
            ..IdleReport::default()
        };
        assert!((r.bytes_per_connection() - 2048.0).abs() < 1e-9);
        assert!(IdleReport::default().bytes_per_connection().abs() < f64::EPSILON);
    }
}
