//! `myqtt-bench`: a load generator for any MQTT broker.
//!
//! It publishes stamped messages through publisher connections to
//! subscriber connections and reports the deliveries per second, the
//! publish-to-delivery latency (p50, p99, max) and the losses; or it opens
//! many idle connections and reports the broker's resident memory per
//! connection. See `doc/benchmarks.md` and `--help`.
//!
//! Two engines drive the load: `raw` (MQTT over plain sockets from one
//! thread, PUBLISH packets written in batches: far cheaper per message than
//! a broker, the default at full speed with QoS 0 and 1) and `client` (the
//! myqtt client, [`myqtt_core::client::Conn`]: any QoS, fixed rates).
//!
//! # Layout
//!
//! - `args.rs`: the command line.
//! - `load.rs`: the publish/subscribe load and its measurement, with the
//!   client engine; `load/raw.rs`: the raw engine.
//! - `idle.rs`: the idle-connection mode.
//! - `histogram.rs`: latency percentiles in log-linear buckets.
//! - `sys.rs`: `/proc` readings (RSS, CPU time) and the open-file limit.
//! - `report.rs`: the human line and the JSON line.
//! - `error.rs`: why a run failed.
//!
//! Exit status: 0 when the run completed (QoS 0 losses are reported, not
//! failures), 1 when a QoS 1/2 message was lost or a publish failed, or an
//! idle connection failed, 2 for a bad command line, 3 when the run could
//! not be made or passed its hard time limit.

mod args;
mod error;
mod histogram;
mod idle;
mod load;
mod report;
mod sys;

use std::process::ExitCode;
use std::time::Duration;

use args::{Args, ArgsError, Mode};
use myqtt_core::codec::QoS;

/// Exit status of a run that could not be made or overran its time limit.
const SETUP_FAILED: u8 = 3;

/// Ends the process if the run is still going after `limit`: the bench
/// always stops itself, whatever the broker does.
fn watchdog(limit: Duration) {
    let spawned = std::thread::Builder::new()
        .name("myqtt-bench-watchdog".into())
        .spawn(move || {
            std::thread::sleep(limit);
            eprintln!(
                "myqtt-bench: still running after the hard limit of {:.0} s; stopping",
                limit.as_secs_f64()
            );
            std::process::exit(i32::from(SETUP_FAILED));
        });
    if let Err(e) = spawned {
        eprintln!("myqtt-bench: no watchdog thread ({e}); running without a hard limit");
    }
}

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(ArgsError::Help) => {
            print!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(ArgsError::Invalid(e)) => {
            eprintln!("myqtt-bench: {e}");
            return ExitCode::from(2);
        }
    };
    watchdog(args.hard_limit());
    match &args.mode {
        Mode::Load => match load::run(&args) {
            Ok(r) => {
                println!("{}", report::load_human(&args, &r));
                if args.json {
                    println!("{}", report::load_json(&args, &r));
                }
                let reliable = args.qos != QoS::AtMostOnce;
                if reliable && (r.lost > 0 || r.publish_errors > 0) {
                    eprintln!(
                        "myqtt-bench: at QoS {} every message must arrive: {} lost, {} publish errors{}",
                        args.qos.as_u8(),
                        r.lost,
                        r.publish_errors,
                        r.first_error
                            .as_deref()
                            .map(|e| format!(" (first: {e})"))
                            .unwrap_or_default()
                    );
                    return ExitCode::FAILURE;
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("myqtt-bench: {e}");
                ExitCode::from(SETUP_FAILED)
            }
        },
        Mode::Idle(n) => {
            let Some(pid) = args.broker_pid else {
                eprintln!("myqtt-bench: --idle needs --broker-pid");
                return ExitCode::from(2);
            };
            match idle::run(&args, *n, pid) {
                Ok(r) => {
                    println!("{}", report::idle_human(&args, &r));
                    if args.json {
                        println!("{}", report::idle_json(&args, &r));
                    }
                    if r.failed > 0 || r.still_open < r.opened {
                        return ExitCode::FAILURE;
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("myqtt-bench: {e}");
                    ExitCode::from(SETUP_FAILED)
                }
            }
        }
    }
}
