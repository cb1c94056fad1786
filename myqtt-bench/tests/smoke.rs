//! The load generator works against real brokers: short runs of the
//! `myqtt-bench` binary against a mosquitto started on a free loopback
//! port, and against a myqtt listener in this process. Speeds are not
//! checked, only that messages flow, that nothing is lost at QoS 1, and
//! that the idle mode reads the broker's memory.
//!
//! mosquitto (Debian package mosquitto) must be installed: these tests fail,
//! they do not skip, without it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

/// A mosquitto on a free loopback port, killed on drop.
struct Mosquitto {
    port: u16,
    child: Child,
    dir: PathBuf,
}

impl Mosquitto {
    fn start(name: &str) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("cannot bind a loopback port");
        let dir = std::env::temp_dir().join(format!("myqtt-bench-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_queued_messages 100000\nmax_inflight_messages 0\n"
            ),
        )
        .expect("write the configuration");
        let mosquitto = ["mosquitto", "/usr/sbin/mosquitto"]
            .into_iter()
            .find(|m| {
                Command::new(m)
                    .arg("-h")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok()
            })
            .expect(
                "cannot run `mosquitto`: install the Debian package mosquitto \
                 (this test needs a real broker and does not skip)",
            );
        let child = Command::new(mosquitto)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        let mut m = Self { port, child, dir };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            assert!(
                m.child.try_wait().ok().flatten().is_none(),
                "mosquitto exited at start"
            );
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        m
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the bench with `args` and `--json`: its exit status and the
/// fields of its JSON line.
fn bench(broker: &Mosquitto, args: &[&str]) -> (bool, String) {
    bench_port(broker.port, args)
}

/// [`bench`] against any broker on a loopback port.
fn bench_port(port: u16, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_myqtt-bench"))
        .args(["--port", &port.to_string(), "--json", "--timeout", "30"])
        .args(args)
        .output()
        .expect("run myqtt-bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| {
            panic!(
                "no JSON line; stdout: {stdout} stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_string();
    (out.status.success(), json)
}

/// The text of the value after `"key":` in a flat JSON object.
fn raw<'a>(json: &'a str, key: &str) -> &'a str {
    let pat = format!("\"{key}\":");
    let start = json
        .find(&pat)
        .unwrap_or_else(|| panic!("{key} missing in {json}"))
        + pat.len();
    let rest = &json[start..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    &rest[..end]
}

/// A count field.
fn count(json: &str, key: &str) -> u64 {
    raw(json, key)
        .parse()
        .unwrap_or_else(|e| panic!("{key} in {json}: {e}"))
}

/// A decimal field.
fn number(json: &str, key: &str) -> f64 {
    raw(json, key)
        .parse()
        .unwrap_or_else(|e| panic!("{key} in {json}: {e}"))
}

#[test]
fn qos1_messages_flow_one_to_one_and_none_is_lost_with_either_engine() {
    for engine in ["raw", "client"] {
        qos1_one_to_one(engine);
    }
}

fn qos1_one_to_one(engine: &str) {
    let broker = Mosquitto::start(&format!("q1-{engine}"));
    let (ok, json) = bench(
        &broker,
        &[
            "--qos",
            "1",
            "--duration",
            "1",
            "--warmup",
            "0.2",
            "--engine",
            engine,
        ],
    );
    assert!(ok, "{json}");
    assert_eq!(raw(&json, "engine"), format!("\"{engine}\""), "{json}");
    assert!(count(&json, "deliveries") > 0, "{json}");
    assert!(number(&json, "delivery_rate") > 0.0, "{json}");
    // QoS 1: every published message arrives [MQTT-4.3.2-1].
    assert_eq!(count(&json, "lost"), 0, "{json}");
    assert_eq!(count(&json, "publish_errors"), 0, "{json}");
    assert_eq!(
        count(&json, "deliveries"),
        count(&json, "published"),
        "{json}"
    );
    assert!(number(&json, "p50_us") > 0.0, "{json}");
}

#[test]
fn qos1_fan_out_delivers_every_message_to_every_subscriber_at_mqtt5() {
    let broker = Mosquitto::start("fan");
    let (ok, json) = bench(
        &broker,
        &[
            "--qos",
            "1",
            "--shape",
            "1toN",
            "--subscribers",
            "4",
            "--protocol",
            "5",
            "--count",
            "2000",
            "--warmup",
            "0",
        ],
    );
    assert!(ok, "{json}");
    assert_eq!(count(&json, "published"), 2000, "{json}");
    assert_eq!(count(&json, "expected"), 8000, "{json}");
    assert_eq!(count(&json, "deliveries"), 8000, "{json}");
    assert_eq!(count(&json, "lost"), 0, "{json}");
}

#[test]
fn a_paced_qos0_run_publishes_near_the_asked_rate() {
    let broker = Mosquitto::start("paced");
    let (ok, json) = bench(
        &broker,
        &["--rate", "2000", "--duration", "1", "--warmup", "0.2"],
    );
    assert!(ok, "{json}");
    assert!(count(&json, "deliveries") > 0, "{json}");
    // Paced, not flat out: at most 2000 in the measured second (one more
    // for the message due at its very end).
    let published = count(&json, "published");
    assert!(published > 0 && published <= 2001, "{json}");
}

#[test]
fn idle_mode_opens_every_connection_and_reads_the_brokers_rss() {
    let broker = Mosquitto::start("idle");
    let pid = broker.pid().to_string();
    let (ok, json) = bench(&broker, &["--idle", "200", "--broker-pid", &pid]);
    assert!(ok, "{json}");
    assert_eq!(count(&json, "opened"), 200, "{json}");
    assert_eq!(count(&json, "still_open"), 200, "{json}");
    assert!(count(&json, "rss_before") > 0, "{json}");
    assert!(count(&json, "rss_after") > 0, "{json}");
}

#[test]
fn the_myqtt_listener_carries_a_qos1_fan_out_without_loss() {
    let ctx = myqtt_core::Ctx::builder()
        .worker_threads(1)
        .build()
        .unwrap();
    let listener = ctx.create_listener("127.0.0.1", 0).unwrap();
    let port = listener.local_addr().port();
    let (ok, json) = bench_port(
        port,
        &[
            "--qos",
            "1",
            "--shape",
            "1toN",
            "--subscribers",
            "4",
            "--count",
            "2000",
            "--warmup",
            "0",
        ],
    );
    ctx.exit();
    assert!(ok, "{json}");
    assert_eq!(count(&json, "deliveries"), 8000, "{json}");
    assert_eq!(count(&json, "lost"), 0, "{json}");
}
