//! The two output lines of a run: one for people, one JSON object for
//! scripts (`--json`), with the same figures.

use std::fmt::Write as _;

use crate::args::{Args, Stop};
use crate::idle::IdleReport;
use crate::load::LoadReport;

/// A flat JSON object built field by field.
struct Json(String);

impl Json {
    fn new() -> Self {
        Self(String::from("{"))
    }

    fn key(&mut self, k: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        let _ = write!(self.0, "\"{k}\":");
    }

    fn str(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k);
        self.0.push('"');
        for c in v.chars() {
            match c {
                '"' => self.0.push_str("\\\""),
                '\\' => self.0.push_str("\\\\"),
                c if u32::from(c) < 0x20 => {
                    let _ = write!(self.0, "\\u{:04x}", u32::from(c));
                }
                c => self.0.push(c),
            }
        }
        self.0.push('"');
        self
    }

    fn int(&mut self, k: &str, v: impl std::fmt::Display) -> &mut Self {
        self.key(k);
        let _ = write!(self.0, "{v}");
        self
    }

    fn num(&mut self, k: &str, v: f64) -> &mut Self {
        self.key(k);
        if v.is_finite() {
            let _ = write!(self.0, "{v:.1}");
        } else {
            self.0.push_str("null");
        }
        self
    }

    fn opt(&mut self, k: &str, v: Option<f64>) -> &mut Self {
        if let Some(v) = v {
            return self.num(k, v);
        }
        self.key(k);
        self.0.push_str("null");
        self
    }

    fn finish(&mut self) -> String {
        self.0.push('}');
        std::mem::take(&mut self.0)
    }
}

/// Nanoseconds to microseconds.
#[allow(clippy::cast_precision_loss)]
fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn protocol(args: &Args) -> &'static str {
    match args.protocol {
        myqtt_core::codec::ProtocolVersion::V31 => "3.1",
        myqtt_core::codec::ProtocolVersion::V311 => "3.1.1",
        myqtt_core::codec::ProtocolVersion::V5 => "5",
    }
}

fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.0}%"))
}

/// The human line of a load run.
pub fn load_human(args: &Args, r: &LoadReport) -> String {
    let p50 = r.latency.quantile(0.5).map_or(0.0, us);
    let p99 = r.latency.quantile(0.99).map_or(0.0, us);
    let mut s = format!(
        "{shape} {pubs}->{subs} qos{qos} {size}B mqtt {proto} ({engine} engine): published {published} ({prate:.0}/s), \
         delivered {deliveries} ({drate:.0}/s), latency p50 {p50:.0} us p99 {p99:.0} us max {max:.0} us, \
         lost {lost} of {expected}",
        shape = args.shape.name(),
        pubs = args.publishers,
        subs = args.subscribers,
        qos = args.qos.as_u8(),
        size = args.size,
        proto = protocol(args),
        engine = args.engine.name(),
        published = r.published,
        prate = r.publish_rate(),
        deliveries = r.deliveries,
        drate = r.delivery_rate(),
        max = us(r.latency.max()),
        lost = r.lost,
        expected = r.expected,
    );
    if r.publish_errors > 0 {
        let _ = write!(s, ", {} publish errors", r.publish_errors);
    }
    for (n, what) in [
        (r.duplicates, "duplicates"),
        (r.out_of_order, "out of order"),
        (r.holes, "missing before later ones"),
        (r.malformed, "malformed"),
        (r.client_dropped, "dropped by the client"),
        (r.window_stalls, "window stalls"),
    ] {
        if n > 0 {
            let _ = write!(s, ", {n} {what}");
        }
    }
    let _ = write!(
        s,
        ", cpu bench {} broker {}",
        percent(r.bench_cpu),
        percent(r.broker_cpu)
    );
    s
}

/// The JSON line of a load run.
pub fn load_json(args: &Args, r: &LoadReport) -> String {
    let mut j = Json::new();
    j.str("mode", "load")
        .str("broker", &format!("{}:{}", args.host, args.port))
        .str("protocol", protocol(args))
        .int("qos", args.qos.as_u8())
        .int("size", args.size)
        .str("shape", args.shape.name())
        .str("engine", args.engine.name())
        .int("publishers", args.publishers)
        .int("subscribers", args.subscribers)
        .num("rate_target", args.rate)
        .int("window", args.window);
    match args.stop {
        Stop::Duration(d) => j.num("duration_s", d.as_secs_f64()),
        Stop::Count(n) => j.int("count", n),
    };
    j.int("published", r.published)
        .num("publish_rate", r.publish_rate())
        .int("expected", r.expected)
        .int("deliveries", r.deliveries)
        .num("delivery_rate", r.delivery_rate())
        .int("lost", r.lost)
        .int("duplicates", r.duplicates)
        .int("out_of_order", r.out_of_order)
        .int("holes", r.holes)
        .int("malformed", r.malformed)
        .int("client_dropped", r.client_dropped)
        .int("window_stalls", r.window_stalls)
        .int("publish_errors", r.publish_errors)
        .opt("p50_us", r.latency.quantile(0.5).map(us))
        .opt("p99_us", r.latency.quantile(0.99).map(us))
        .num("max_us", us(r.latency.max()))
        .int("latency_samples", r.latency.len())
        .opt("bench_cpu", r.bench_cpu)
        .opt("broker_cpu", r.broker_cpu);
    if let Some(e) = &r.first_error {
        j.str("first_error", e);
    }
    j.finish()
}

/// The human line of an idle run.
pub fn idle_human(args: &Args, r: &IdleReport) -> String {
    let mut s = format!(
        "idle {opened}/{requested} connections to {host}:{port} (mqtt {proto}) in {secs:.1} s: \
         broker RSS {before:.1} -> {after:.1} MiB, {per:.0} bytes per connection",
        opened = r.opened,
        requested = r.requested,
        host = args.host,
        port = args.port,
        proto = protocol(args),
        secs = r.connect_secs,
        before = mib(r.rss_before),
        after = mib(r.rss_after),
        per = r.bytes_per_connection(),
    );
    if r.still_open < r.opened {
        let _ = write!(s, ", only {} still open", r.still_open);
    }
    if r.failed > 0 {
        let _ = write!(
            s,
            ", {} failed (first: {})",
            r.failed,
            r.first_error.as_deref().unwrap_or("?")
        );
    }
    s
}

#[allow(clippy::cast_precision_loss)]
fn mib(b: u64) -> f64 {
    b as f64 / f64::from(1u32 << 20)
}

/// The JSON line of an idle run.
pub fn idle_json(args: &Args, r: &IdleReport) -> String {
    let mut j = Json::new();
    j.str("mode", "idle")
        .str("broker", &format!("{}:{}", args.host, args.port))
        .str("protocol", protocol(args))
        .int("requested", r.requested)
        .int("opened", r.opened)
        .int("still_open", r.still_open)
        .int("failed", r.failed)
        .int("rss_before", r.rss_before)
        .int("rss_after", r.rss_after)
        .num("bytes_per_conn", r.bytes_per_connection())
        .num("connect_s", r.connect_secs)
        .int("fd_limit", r.fd_limit);
    match r.broker_fd_limit {
        Some(n) => j.int("broker_fd_limit", n),
        None => j.str("broker_fd_limit", "unknown"),
    };
    if let Some(e) = &r.first_error {
        j.str("first_error", e);
    }
    j.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped_and_fields_separated() {
        let line = Json::new()
            .str("a", "say \"hi\"\\\n")
            .int("b", 3)
            .num("c", 1.5)
            .opt("d", None)
            .num("e", f64::NAN)
            .finish();
        assert_eq!(
            line,
            r#"{"a":"say \"hi\"\\\u000a","b":3,"c":1.5,"d":null,"e":null}"#
        );
    }

    #[test]
    fn a_load_report_has_every_figure_in_both_lines() {
        let args = Args::parse(["--qos".to_string(), "1".to_string()]).unwrap();
        let mut r = LoadReport {
            published: 1000,
            expected: 1000,
            deliveries: 990,
            lost: 10,
            publish_secs: 1.0,
            delivery_secs: 1.1,
            ..LoadReport::default()
        };
        r.latency.record(40_000);
        let human = load_human(&args, &r);
        assert!(human.contains("lost 10 of 1000"), "{human}");
        assert!(human.contains("p50 40 us"), "{human}");
        let json = load_json(&args, &r);
        assert!(json.contains(r#""deliveries":990"#), "{json}");
        assert!(json.contains(r#""delivery_rate":900.0"#), "{json}");
        assert!(json.contains(r#""qos":1"#), "{json}");
        assert!(json.contains(r#""p50_us":40."#), "{json}");
    }
}
