//! LoongArch64 test programs under `qemu-loongarch64-static -g PORT`, for the tests that drive
//! QEMU's gdb stub (this crate's `gdb_remote.rs` and `loongarch_probe.rs`, the CLI's `probe.rs`).

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::breakpoint::arch::loongarch64::LoongArch64;
use crate::breakpoint::transport::gdb::remote::GdbRemote;

/// `testdata/loongarch/probe-target.c`, the program the LoongArch engine tests probe (see its
/// header for the functions and their first instructions).
pub fn probe_target() -> PathBuf {
    super::compile_loongarch("loongarch/probe-target.c", "la-probe-target")
}

/// `testdata/loongarch/hello.c`, the gdb client's test program (modes: none, `loop`, `break`).
pub fn hello() -> PathBuf {
    super::compile_loongarch("loongarch/hello.c", "la-hello")
}

/// A TCP port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// QEMU running `program`, waiting for a debugger; killed if a test fails before it ends.
#[derive(Debug)]
pub struct Qemu {
    /// The QEMU process.
    pub child: Child,
    /// Its gdb stub's port on 127.0.0.1.
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
            .expect("qemu-loongarch64-static must be installed (cargo xtask test installs it)");
        Qemu { child, port }
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The CLI's `--target` for it: `qemu-gdb:127.0.0.1:PORT`.
    pub fn target(&self) -> String {
        format!("qemu-gdb:{}", self.address())
    }

    /// A client connected to the stub.
    pub fn connect(&self) -> GdbRemote<LoongArch64> {
        GdbRemote::connect(&self.address(), Duration::from_secs(10))
            .expect("connect to QEMU's gdb stub")
    }

    /// QEMU's pid (the thread id its stub reports for the main thread).
    pub fn pid(&self) -> i64 {
        i64::from(self.child.id())
    }

    /// Waits for QEMU (the program) to end: (stdout, exit code, killing signal).
    pub fn finish(mut self) -> (String, Option<i32>, Option<i32>) {
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
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
