//! Test helpers for the client tests: a real mosquitto broker on a free
//! loopback port, a TCP proxy that can hold and cut the client's traffic
//! and records the packets the client sends, and condition waits.
#![allow(dead_code)] // each test file uses a different part

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use myqtt_core::codec::{Decoder, Packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// How long any condition in these tests may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Polls `cond` until it holds or `timeout` passes; true if it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind a loopback port")
}

fn scratch_dir() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "myqtt-client-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("cannot create a scratch directory");
    dir
}

/// A mosquitto broker started for one test, killed on drop.
pub struct Mosquitto {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
    extra: String,
}

impl Mosquitto {
    /// A broker with anonymous access and no persistence.
    pub fn start() -> Self {
        Self::start_with("allow_anonymous true\npersistence false\n")
    }

    /// A broker whose configuration is `extra` after the listener line.
    pub fn start_with(extra: &str) -> Self {
        let mut last = None;
        for _ in 0..3 {
            let mut m = Self {
                port: free_port(),
                child: None,
                dir: scratch_dir(),
                extra: extra.to_string(),
            };
            match m.spawn() {
                Ok(()) => return m,
                Err(e) => last = Some(e),
            }
        }
        panic!("mosquitto did not start: {}", last.unwrap_or_default());
    }

    /// Where this broker keeps its files.
    pub fn dir(&self) -> &PathBuf {
        &self.dir
    }

    fn spawn(&mut self) -> Result<(), String> {
        let conf = self.dir.join("mosquitto.conf");
        let log = self.dir.join("mosquitto.log");
        let text = format!(
            "listener {} 127.0.0.1\nuser root\nlog_dest file {}\nlog_type all\n{}",
            self.port,
            log.display(),
            self.extra
        );
        std::fs::write(&conf, text).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&log);
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot run `mosquitto` ({e}): install the Debian package mosquitto \
                     (these tests need a real broker and do not skip)"
                )
            })?;
        self.child = Some(child);
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        // "running" is logged once every listener is bound: a connection
        // accepted before that could be another process on the port.
        let ok = wait_until(WAIT, || {
            if let Some(c) = &mut self.child
                && let Ok(Some(_)) = c.try_wait()
            {
                return true;
            }
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains(" running"))
                && TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
        });
        let exited = self
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
        if !ok || exited {
            self.child = None;
            return Err(format!(
                "mosquitto on port {} did not accept connections; log: {}",
                self.port,
                std::fs::read_to_string(&log).unwrap_or_default()
            ));
        }
        Ok(())
    }

    /// Kills the broker at once (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the broker with SIGTERM (it saves its persistence file) and
    /// waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }

    /// Starts the broker again on the same port with the same files.
    pub fn restart(&mut self) {
        self.kill();
        let mut last = String::new();
        // The port was just released; another process could take it in
        // between, which is unlikely on loopback within a test.
        for _ in 0..50 {
            match self.spawn() {
                Ok(()) => return,
                Err(e) => last = e,
            }
        }
        panic!("mosquitto did not restart: {last}");
    }

    /// The broker's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Creates a mosquitto password file with one user.
pub fn password_file(dir: &std::path::Path, user: &str, password: &str) -> PathBuf {
    let path = dir.join("passwords");
    let status = Command::new("mosquitto_passwd")
        .arg("-c")
        .arg("-b")
        .arg(&path)
        .arg(user)
        .arg(password)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("cannot run mosquitto_passwd (Debian package mosquitto)");
    assert!(status.success(), "mosquitto_passwd failed");
    path
}

/// A TCP proxy between the client and the broker, on its own runtime.
///
/// It records the packets the client sends, can hold the client's bytes
/// (they reach the broker only when released, or never if the connection
/// is cut meanwhile) and can cut every connection.
pub struct Proxy {
    pub port: u16,
    hold: watch::Sender<bool>,
    cut: watch::Sender<u64>,
    refuse: Arc<std::sync::atomic::AtomicBool>,
    sent: Arc<Mutex<Vec<Packet>>>,
    connections: Arc<AtomicU64>,
    ended: Arc<AtomicU64>,
    _rt: tokio::runtime::Runtime,
}

impl Proxy {
    /// A proxy in front of `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("proxy runtime");
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("proxy bind");
        let port = listener.local_addr().expect("proxy addr").port();
        let (hold, hold_rx) = watch::channel(false);
        let (cut, cut_rx) = watch::channel(0u64);
        let sent = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicU64::new(0));
        let refuse = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (sent2, conns2) = (Arc::clone(&sent), Arc::clone(&connections));
        let refuse2 = Arc::clone(&refuse);
        let ended = Arc::new(AtomicU64::new(0));
        let ended2 = Arc::clone(&ended);
        rt.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if refuse2.load(Ordering::SeqCst) {
                    continue; // dropping `client` closes it
                }
                let Ok(broker) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    continue; // dropping `client` closes it
                };
                conns2.fetch_add(1, Ordering::SeqCst);
                let relay = relay(
                    client,
                    broker,
                    hold_rx.clone(),
                    cut_rx.clone(),
                    Arc::clone(&sent2),
                );
                let ended = Arc::clone(&ended2);
                tokio::spawn(async move {
                    relay.await;
                    ended.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            port,
            hold,
            cut,
            refuse,
            sent,
            connections,
            ended,
            _rt: rt,
        }
    }

    /// Holds the client's bytes from now on.
    pub fn hold(&self) {
        self.hold.send_replace(true);
    }

    /// Lets the client's bytes through again.
    pub fn release(&self) {
        self.hold.send_replace(false);
    }

    /// Closes every connection through the proxy; held bytes are lost.
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// Closes new connections at once from now on (`true`), or relays them
    /// again (`false`).
    pub fn refuse(&self, on: bool) {
        self.refuse.store(on, Ordering::SeqCst);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// Relayed connections that have ended (both sockets closed).
    pub fn ended(&self) -> u64 {
        self.ended.load(Ordering::SeqCst)
    }

    /// Cuts every connection and waits until the relays have ended, so
    /// bytes held until now can never reach the broker.
    pub fn cut_and_wait(&self) {
        let before = self.connections() - self.ended();
        let target = self.ended() + before;
        self.cut();
        assert!(
            wait_until(WAIT, || self.ended() >= target),
            "relay did not end"
        );
    }

    /// The packets the client has sent so far, in order.
    pub fn sent(&self) -> Vec<Packet> {
        self.sent.lock().unwrap().clone()
    }

    /// Waits until the packets sent satisfy `cond`.
    pub fn wait_sent(&self, cond: impl Fn(&[Packet]) -> bool) -> bool {
        wait_until(WAIT, || cond(&self.sent.lock().unwrap()))
    }
}

async fn relay(
    mut client: tokio::net::TcpStream,
    mut broker: tokio::net::TcpStream,
    mut hold: watch::Receiver<bool>,
    mut cut: watch::Receiver<u64>,
    sent: Arc<Mutex<Vec<Packet>>>,
) {
    let (mut cr, mut cw) = client.split();
    let (mut br, mut bw) = broker.split();
    let mut decoder = Decoder::default();
    let mut tap = BytesMut::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let read_side = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            tap.extend_from_slice(&buf[..n]);
            while let Ok(Some(p)) = decoder.decode(&mut tap) {
                sent.lock().unwrap().push(p);
            }
            if tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    };
    let write_side = async {
        while let Some(chunk) = rx.recv().await {
            while *hold.borrow_and_update() {
                if hold.changed().await.is_err() {
                    return;
                }
            }
            if bw.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    let up = async {
        tokio::join!(read_side, write_side);
    };
    let down = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match br.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if cw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    cut.borrow_and_update();
    tokio::select! {
        () = up => {}
        () = down => {}
        _ = cut.changed() => {}
    }
}

/// A fake server that answers any CONNECT with the given CONNACK bytes.
pub fn fake_server(connack: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut first = [0u8; 2];
            if std::io::Read::read_exact(&mut s, &mut first).is_ok() {
                let mut rest = vec![0u8; usize::from(first[1])];
                let _ = std::io::Read::read_exact(&mut s, &mut rest);
                let _ = s.write_all(connack);
            }
        }
    });
    port
}
