//! A LoongArch64 program waiting under `qemu-loongarch64-static -g PORT`, for the tests that
//! drive QEMU's gdb stub (`gdb_remote.rs`, `loongarch_probe.rs`).
#![allow(dead_code)]

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tracekit_probe::ptrace::gdb::GdbRemote;

/// A TCP port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// QEMU running `program`, waiting for a debugger; killed if a test fails before it ends.
pub struct Qemu {
    pub child: Child,
    pub port: u16,
}

impl Qemu {
    /// Starts `qemu-loongarch64-static -g PORT program args...` with stdout captured.
    pub fn start(program: &Path, args: &[&str]) -> Qemu {
        let port = free_port();
        let child = Command::new("qemu-loongarch64-static")
            .arg("-g")
            .arg(port.to_string())
            .arg(program)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("qemu-loongarch64-static must be installed (bash .ci/run installs it)");
        Qemu { child, port }
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A client connected to the stub.
    pub fn connect(&self) -> GdbRemote {
        GdbRemote::connect(&self.address(), Duration::from_secs(10)).expect("connect to QEMU's gdb stub")
    }

    /// QEMU's pid (the thread id its stub reports for the main thread).
    pub fn pid(&self) -> i64 {
        i64::from(self.child.id())
    }

    /// Waits for QEMU (the program) to end: (stdout, exit code, killing signal).
    pub fn finish(mut self) -> (String, Option<i32>, Option<i32>) {
        let mut out = String::new();
        self.child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        let status = self.child.wait().unwrap();
        (out, status.code(), status.signal())
    }

    /// Whether it is still running after `wait`.
    pub fn running_after(&mut self, wait: Duration) -> bool {
        std::thread::sleep(wait);
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
