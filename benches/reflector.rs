//! `stunmap serve` against the least a reflector can do, on loopback (criterion).
//!
//! The client is `engine::bench::raw_loop` (raw `sendmmsg`/`recvmmsg`, a fixed window of
//! Binding requests in flight, header check only), one loop per client socket, each on its own
//! thread. The servers, each its own process on its own loopback port:
//!
//! - `raw`: `engine::bench::raw_reflector` (blocking `recvmmsg`, a header check, an answer with
//!   only XOR-MAPPED-ADDRESS written in place, `sendmmsg`), one thread per SO_REUSEPORT
//!   socket, in a process of its own (this program re-executed with `--raw-reflector`);
//! - `serve`: the `stunmap serve --no-tcp --software "" --threads N` process, with
//!   `--per-source-rate 10000000 --per-source-burst 10000000` (the client is one source: the
//!   per-source limit is set out of the way so that it is not what is measured).
//!
//! Group `reflector/<threads>t`: benches `raw` and `serve` with as many client sockets as server
//! threads; the throughput is answers per second (one element = one answered transaction).
//! Every run is bounded: `TRANSACTIONS` per client per iteration, a 200 ms timeout for the
//! last answers. Nothing leaves the machine. BENCHMARKS.md records the numbers.
//!
//! ```sh
//! cargo bench --bench reflector -- --warm-up-time 1 --measurement-time 3
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group};

/// Transactions per client socket per iteration.
const TRANSACTIONS: u64 = 20_000;
/// Requests in flight per client socket.
const WINDOW: usize = 1024;

/// A reflector under test, in its own process (a context switch between processes costs
/// what it costs between a real client and server); killed on drop.
struct Server {
    addr: SocketAddr,
    child: Child,
}

impl Server {
    /// This program again, as `--raw-reflector ADDR THREADS` (see `main`).
    fn raw(threads: usize) -> Server {
        let addr = free_addr();
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--raw-reflector", &addr.to_string(), &threads.to_string()])
            .stdin(Stdio::null())
            .spawn()
            .expect("start the raw reflector");
        Server::started(addr, child)
    }

    fn serve(threads: usize) -> Server {
        let addr = free_addr();
        let child = Command::new(env!("CARGO_BIN_EXE_stunmap"))
            .args(["serve", "--listen", &addr.to_string(), "--no-tcp"])
            .args(["--software", "", "--threads", &threads.to_string()])
            .args(["--per-source-rate", "10000000"])
            .args(["--per-source-burst", "10000000"])
            .args(["--duration", "600"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start stunmap serve");
        Server::started(addr, child)
    }

    fn started(addr: SocketAddr, child: Child) -> Server {
        let s = Server { addr, child };
        wait_answering(s.addr);
        s
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The raw reflector's process: `threads` SO_REUSEPORT sockets on `addr`, one thread each,
/// until killed (a `--duration`-like bound: it also stops after 600 s).
fn raw_reflector(addr: SocketAddr, threads: usize) {
    let socks = engine::udp::bind_reuseport_group(addr, threads).expect("bind");
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = socks
        .into_iter()
        .map(|s| {
            let stop = stop.clone();
            std::thread::spawn(move || engine::bench::raw_reflector(&s, &stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(600));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
}

fn wait_answering(addr: SocketAddr) {
    for _ in 0..100 {
        if let Ok(r) = engine::bench::raw_loop(&[addr], 1, 1, Duration::from_millis(50))
            && r.received == 1
        {
            return;
        }
    }
    panic!("nothing answers on {addr}");
}

/// `clients` raw loops at once, `count` transactions each: the longest loop's time. Panics
/// when more than 1 % of the transactions went unanswered (a figure that is not a rate).
fn run_clients(addr: SocketAddr, clients: usize, count: u64) -> Duration {
    let loops: Vec<_> = (0..clients)
        .map(|_| {
            std::thread::spawn(move || {
                engine::bench::raw_loop(&[addr], count, WINDOW, Duration::from_millis(200))
            })
        })
        .collect();
    let (mut sent, mut received, mut elapsed) = (0, 0, 0f64);
    for l in loops {
        let r = l.join().unwrap().unwrap();
        sent += r.sent;
        received += r.received;
        elapsed = elapsed.max(r.elapsed);
    }
    assert!(
        received * 100 >= sent * 99,
        "{received} of {sent} answered on {addr}"
    );
    Duration::from_secs_f64(elapsed)
}

fn reflector(c: &mut Criterion) {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut counts = vec![1];
    if cores > 1 {
        counts.push(cores);
    }
    for threads in counts {
        let mut group = c.benchmark_group(format!("reflector/{threads}t"));
        group.sample_size(10);
        group.throughput(Throughput::Elements(TRANSACTIONS * threads as u64));
        for (name, make) in [
            ("raw", Server::raw as fn(usize) -> Server),
            ("serve", Server::serve),
        ] {
            let server = make(threads);
            let addr = server.addr;
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| run_clients(addr, threads, TRANSACTIONS))
                        .sum()
                });
            });
            drop(server);
        }
        group.finish();
    }
}

criterion_group!(benches, reflector);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--raw-reflector") {
        raw_reflector(args[i + 1].parse().unwrap(), args[i + 2].parse().unwrap());
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
