//! The command line: [`Args`] and its parser, with the usage text.

use std::time::Duration;

use myqtt_core::codec::{ProtocolVersion, QoS};

/// The usage text (`--help`).
pub const USAGE: &str = "\
myqtt-bench: a load generator for any MQTT broker

usage:
  myqtt-bench [OPTIONS]                          publish/subscribe load
  myqtt-bench --idle N [--broker-pid PID] [OPTIONS]   idle connections

broker:
  --host HOST            broker host (default 127.0.0.1)
  --port PORT            broker port (default 1883)
  --protocol 3.1.1|5     MQTT version (default 3.1.1)

load:
  --qos 0|1|2            QoS of publications and subscriptions (default 0)
  --size BYTES           payload size, at least 20 (default 64)
  --shape 1to1|NtoN|1toN 1to1: N publisher/subscriber pairs, one topic each;
                         NtoN: N publishers and M subscribers on one topic;
                         1toN: one publisher, N subscribers (default 1to1)
  --publishers N         publishing connections (default 1)
  --subscribers N        subscribing connections (default: 1to1 and NtoN as
                         many as publishers, 1toN 16)
  --rate MSGS/S          total publish rate, 0 = as fast as possible (default 0)
  --duration SECS        measured publishing time (default 10)
  --count N              messages per publisher instead of a duration
  --warmup SECS          publishing before measuring (default 1)
  --drain SECS           after publishing, longest wait with no new delivery
                         for the outstanding ones (default 5)
  --inflight N           QoS 1/2 messages in flight per publisher (default 256)
  --engine raw|client    raw: MQTT over plain sockets from one thread, batched
                         writes (QoS 0/1 at full speed); client: the myqtt
                         client (default: raw at full speed with QoS 0/1,
                         client otherwise)
  --window N             at full speed, messages published and not yet
                         received by a subscriber, at most, per subscriber
                         (NtoN: shared among the publishers): a closed loop,
                         so buffers and broker queues stay bounded; 0 = open
                         loop (default 1000)

idle:
  --idle N               open N idle connections, report the broker's RSS per
                         connection (needs --broker-pid)
  --keep-alive SECS      their keep alive (default 3600)
  --connect-parallel N   connections being opened at once (default 64; more
                         can overflow a listen backlog and wait 1 s SYN retries)

general:
  --broker-pid PID       the broker's process: its RSS (idle mode) and CPU
                         time (load mode) come from /proc/PID
  --threads N            runtime worker threads, 0 = one per usable core
                         (default 0)
  --timeout SECS         hard limit on the whole run (default: derived)
  --json                 also print one JSON line
  -h, --help             this text
";

/// How publishers and subscribers are paired up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Publisher `i` publishes to its own topic; subscriber `i` alone
    /// subscribes to it.
    OneToOne,
    /// Every publisher publishes to one topic every subscriber subscribes to.
    ManyToMany,
    /// One publisher, every subscriber on its topic (fan-out).
    OneToMany,
}

impl Shape {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::OneToOne => "1to1",
            Self::ManyToMany => "NtoN",
            Self::OneToMany => "1toN",
        }
    }
}

/// What drives the load's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// MQTT over plain sockets, every connection on one thread, PUBLISH
    /// packets written in batches: a generator that costs far less per
    /// message than a broker (full speed, QoS 0 and 1).
    Raw,
    /// The myqtt client (`Conn`): any QoS, fixed rates.
    Client,
}

impl Engine {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Client => "client",
        }
    }
}

/// When publishers stop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// After publishing for this long (after the warm-up).
    Duration(Duration),
    /// After this many messages per publisher (after the warm-up).
    Count(u64),
}

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Publish/subscribe load.
    Load,
    /// Open this many idle connections and measure the broker's RSS.
    Idle(usize),
}

/// The parsed command line, with defaults applied and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// MQTT version.
    pub protocol: ProtocolVersion,
    /// QoS of every publication and subscription.
    pub qos: QoS,
    /// Payload size in bytes (at least [`MIN_SIZE`]).
    pub size: usize,
    /// How publishers and subscribers pair up.
    pub shape: Shape,
    /// Publishing connections.
    pub publishers: usize,
    /// Subscribing connections.
    pub subscribers: usize,
    /// Total publish rate in messages per second; 0: as fast as possible.
    pub rate: f64,
    /// When publishing stops.
    pub stop: Stop,
    /// Publishing before measuring.
    pub warmup: Duration,
    /// Longest wait with no new delivery once publishing stopped.
    pub drain: Duration,
    /// QoS 1/2 messages in flight per publisher.
    pub inflight: u16,
    /// Messages published at full speed and not yet received by a
    /// subscriber, at most, per subscriber; 0: no limit (open loop).
    pub window: u64,
    /// What drives the connections.
    pub engine: Engine,
    /// Load or idle connections.
    pub mode: Mode,
    /// Keep alive of idle connections, in seconds.
    pub keep_alive: u16,
    /// Idle connections being opened at once.
    pub connect_parallel: usize,
    /// The broker's process id, for /proc.
    pub broker_pid: Option<u32>,
    /// Runtime worker threads; 0: one per usable core.
    pub threads: usize,
    /// Hard limit on the run; `None`: derived from the other options.
    pub timeout: Option<Duration>,
    /// Print a JSON line too.
    pub json: bool,
}

/// The smallest payload: timestamp (8), publisher (4), sequence (8).
pub const MIN_SIZE: usize = 20;

/// Why the command line was refused; `Help` when help was asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    /// `-h` / `--help`.
    #[error("help requested")]
    Help,
    /// Anything else, with the reason.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> ArgsError {
    ArgsError::Invalid(msg.into())
}

fn value<T: std::str::FromStr>(
    it: &mut impl Iterator<Item = String>,
    flag: &str,
) -> Result<T, ArgsError>
where
    T::Err: std::fmt::Display,
{
    let v = it
        .next()
        .ok_or_else(|| invalid(format!("{flag} needs a value")))?;
    v.parse().map_err(|e| invalid(format!("{flag} {v}: {e}")))
}

fn seconds(it: &mut impl Iterator<Item = String>, flag: &str) -> Result<Duration, ArgsError> {
    let s: f64 = value(it, flag)?;
    Duration::try_from_secs_f64(s).map_err(|e| invalid(format!("{flag} {s}: {e}")))
}

impl Args {
    /// Parses the arguments (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, ArgsError> {
        let mut a = Self {
            host: "127.0.0.1".into(),
            port: 1883,
            protocol: ProtocolVersion::V311,
            qos: QoS::AtMostOnce,
            size: 64,
            shape: Shape::OneToOne,
            publishers: 1,
            subscribers: 0,
            rate: 0.0,
            stop: Stop::Duration(Duration::from_secs(10)),
            warmup: Duration::from_secs(1),
            drain: Duration::from_secs(5),
            inflight: 256,
            window: 1000,
            engine: Engine::Raw,
            mode: Mode::Load,
            keep_alive: 3600,
            connect_parallel: 64,
            broker_pid: None,
            threads: 0,
            timeout: None,
            json: false,
        };
        let mut subscribers = None;
        let mut publishers = None;
        let mut engine = None;
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            let it = &mut it;
            match flag.as_str() {
                "--host" => a.host = value(it, &flag)?,
                "--port" => a.port = value(it, &flag)?,
                "--protocol" => {
                    let v: String = value(it, &flag)?;
                    a.protocol = match v.as_str() {
                        "3.1.1" | "311" | "4" => ProtocolVersion::V311,
                        "5" | "5.0" => ProtocolVersion::V5,
                        "3.1" | "31" | "3" => ProtocolVersion::V31,
                        _ => return Err(invalid(format!("--protocol {v}: 3.1.1 or 5"))),
                    };
                }
                "--qos" => {
                    let v: u8 = value(it, &flag)?;
                    a.qos =
                        QoS::try_from(v).map_err(|_| invalid(format!("--qos {v}: 0, 1 or 2")))?;
                }
                "--size" => a.size = value(it, &flag)?,
                "--shape" => {
                    let v: String = value(it, &flag)?;
                    a.shape = match v.to_ascii_lowercase().as_str() {
                        "1to1" => Shape::OneToOne,
                        "nton" => Shape::ManyToMany,
                        "1ton" => Shape::OneToMany,
                        _ => {
                            return Err(invalid(format!("--shape {v}: 1to1, NtoN or 1toN")));
                        }
                    };
                }
                "--publishers" => publishers = Some(value(it, &flag)?),
                "--subscribers" => subscribers = Some(value(it, &flag)?),
                "--rate" => a.rate = value(it, &flag)?,
                "--duration" => a.stop = Stop::Duration(seconds(it, &flag)?),
                "--count" => a.stop = Stop::Count(value(it, &flag)?),
                "--warmup" => a.warmup = seconds(it, &flag)?,
                "--drain" => a.drain = seconds(it, &flag)?,
                "--inflight" => a.inflight = value(it, &flag)?,
                "--window" => a.window = value(it, &flag)?,
                "--engine" => {
                    let v: String = value(it, &flag)?;
                    engine = Some(match v.as_str() {
                        "raw" => Engine::Raw,
                        "client" => Engine::Client,
                        _ => return Err(invalid(format!("--engine {v}: raw or client"))),
                    });
                }
                "--idle" => a.mode = Mode::Idle(value(it, &flag)?),
                "--keep-alive" => a.keep_alive = value(it, &flag)?,
                "--connect-parallel" => a.connect_parallel = value(it, &flag)?,
                "--broker-pid" => a.broker_pid = Some(value(it, &flag)?),
                "--threads" => a.threads = value(it, &flag)?,
                "--timeout" => a.timeout = Some(seconds(it, &flag)?),
                "--json" => a.json = true,
                "-h" | "--help" => return Err(ArgsError::Help),
                other => return Err(invalid(format!("unknown argument {other} (see --help)"))),
            }
        }
        a.resolve_counts(publishers, subscribers)?;
        a.resolve_engine(engine)?;
        a.check()?;
        Ok(a)
    }

    /// The engine asked for, or the default: raw where it fits.
    fn resolve_engine(&mut self, engine: Option<Engine>) -> Result<(), ArgsError> {
        // The raw engine publishes at full speed, at QoS 0 or 1.
        let raw_fits = self.rate == 0.0 && self.qos != QoS::ExactlyOnce;
        self.engine = match engine {
            Some(Engine::Raw) if !raw_fits => {
                return Err(invalid(
                    "--engine raw runs at full speed (--rate 0) with QoS 0 or 1",
                ));
            }
            Some(e) => e,
            None if raw_fits => Engine::Raw,
            None => Engine::Client,
        };
        Ok(())
    }

    fn resolve_counts(
        &mut self,
        publishers: Option<usize>,
        subscribers: Option<usize>,
    ) -> Result<(), ArgsError> {
        match self.shape {
            Shape::OneToOne => {
                let n = publishers.or(subscribers).unwrap_or(1);
                if publishers.unwrap_or(n) != n || subscribers.unwrap_or(n) != n {
                    return Err(invalid(
                        "--shape 1to1 pairs publishers with subscribers: give one count",
                    ));
                }
                self.publishers = n;
                self.subscribers = n;
            }
            Shape::ManyToMany => {
                self.publishers = publishers.unwrap_or(1);
                self.subscribers = subscribers.unwrap_or(self.publishers);
            }
            Shape::OneToMany => {
                if publishers.is_some_and(|p| p != 1) {
                    return Err(invalid("--shape 1toN has one publisher"));
                }
                self.publishers = 1;
                self.subscribers = subscribers.unwrap_or(16);
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<(), ArgsError> {
        if self.size < MIN_SIZE {
            return Err(invalid(format!(
                "--size {}: at least {MIN_SIZE} (timestamp, publisher, sequence)",
                self.size
            )));
        }
        if self.publishers == 0 || self.subscribers == 0 {
            return Err(invalid("--publishers and --subscribers must be at least 1"));
        }
        if !self.rate.is_finite() || self.rate < 0.0 {
            return Err(invalid("--rate must be 0 or a positive number"));
        }
        if self.inflight == 0 {
            return Err(invalid("--inflight must be at least 1"));
        }
        if self.connect_parallel == 0 {
            return Err(invalid("--connect-parallel must be at least 1"));
        }
        match self.stop {
            Stop::Duration(d) if d.is_zero() => return Err(invalid("--duration must be above 0")),
            Stop::Count(0) => return Err(invalid("--count must be at least 1")),
            _ => {}
        }
        if let Mode::Idle(n) = self.mode {
            if n == 0 {
                return Err(invalid("--idle must be at least 1"));
            }
            if self.broker_pid.is_none() {
                return Err(invalid(
                    "--idle needs --broker-pid PID to read the broker's RSS",
                ));
            }
        }
        Ok(())
    }

    /// The hard limit on the whole run: `--timeout`, or one derived from
    /// the other options with room for connecting and draining.
    pub fn hard_limit(&self) -> Duration {
        if let Some(t) = self.timeout {
            return t;
        }
        let margin = Duration::from_secs(60);
        match (&self.mode, self.stop) {
            (Mode::Idle(n), _) => margin + Duration::from_millis(10 * *n as u64),
            (Mode::Load, Stop::Duration(d)) => self.warmup + d + self.drain * 2 + margin,
            (Mode::Load, Stop::Count(_)) => self.warmup + self.drain * 2 + margin * 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Args, ArgsError> {
        Args::parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn no_arguments_give_the_documented_defaults() {
        let a = parse("").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("127.0.0.1", 1883));
        assert_eq!(a.protocol, ProtocolVersion::V311);
        assert_eq!(a.qos, QoS::AtMostOnce);
        assert_eq!(a.size, 64);
        assert_eq!(
            (a.shape, a.publishers, a.subscribers),
            (Shape::OneToOne, 1, 1)
        );
        assert_eq!(a.stop, Stop::Duration(Duration::from_secs(10)));
        assert_eq!(a.mode, Mode::Load);
        assert_eq!(a.engine, Engine::Raw);
    }

    #[test]
    fn the_raw_engine_is_the_default_at_full_speed_with_qos_0_or_1_only() {
        assert_eq!(parse("--qos 1").unwrap().engine, Engine::Raw);
        assert_eq!(parse("--rate 1000").unwrap().engine, Engine::Client);
        assert_eq!(parse("--qos 2").unwrap().engine, Engine::Client);
        assert_eq!(parse("--engine client").unwrap().engine, Engine::Client);
        assert!(parse("--engine raw --qos 2").is_err());
        assert!(parse("--engine raw --rate 10").is_err());
        assert!(parse("--engine fast").is_err());
    }

    #[test]
    fn fan_out_defaults_to_sixteen_subscribers_and_one_publisher() {
        let a = parse("--shape 1toN --qos 1 --protocol 5").unwrap();
        assert_eq!((a.publishers, a.subscribers), (1, 16));
        assert_eq!(a.qos, QoS::AtLeastOnce);
        assert_eq!(a.protocol, ProtocolVersion::V5);
    }

    #[test]
    fn one_to_one_refuses_unequal_counts() {
        assert!(parse("--publishers 2 --subscribers 3").is_err());
        let a = parse("--publishers 4").unwrap();
        assert_eq!((a.publishers, a.subscribers), (4, 4));
    }

    #[test]
    fn fan_out_refuses_several_publishers() {
        assert!(parse("--shape 1toN --publishers 2").is_err());
    }

    #[test]
    fn a_payload_too_small_for_the_stamp_is_refused() {
        assert!(parse("--size 19").is_err());
        assert_eq!(parse("--size 20").unwrap().size, 20);
    }

    #[test]
    fn idle_mode_needs_the_broker_pid() {
        assert!(parse("--idle 10").is_err());
        let a = parse("--idle 10 --broker-pid 42").unwrap();
        assert_eq!((a.mode, a.broker_pid), (Mode::Idle(10), Some(42)));
    }

    #[test]
    fn counts_durations_and_rates_are_read() {
        let a = parse("--count 500 --warmup 0.5 --rate 10000 --shape NtoN --publishers 3").unwrap();
        assert_eq!(a.stop, Stop::Count(500));
        assert_eq!(a.warmup, Duration::from_millis(500));
        assert!((a.rate - 10_000.0).abs() < f64::EPSILON);
        assert_eq!((a.publishers, a.subscribers), (3, 3));
    }

    #[test]
    fn unknown_flags_bad_values_and_help_are_reported() {
        assert!(matches!(parse("--frobnicate"), Err(ArgsError::Invalid(_))));
        assert!(matches!(parse("--qos 3"), Err(ArgsError::Invalid(_))));
        assert!(matches!(parse("--port"), Err(ArgsError::Invalid(_))));
        assert!(matches!(parse("--rate -1"), Err(ArgsError::Invalid(_))));
        assert_eq!(parse("--help"), Err(ArgsError::Help));
    }
}
