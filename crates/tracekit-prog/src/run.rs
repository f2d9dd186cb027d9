//! One test run of a loaded program, and benchmarks made of many.

use crate::Error;
use crate::kind::ProgKind;
use crate::loader::LoadedMap;
use crate::maps::{self, MapDump};
use crate::sys::{self, TestRunIo, TestRunOut};
use serde::Serialize;
use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};
use tracekit_core::stats::{SampleSummary, Samples};

/// Room left after the input when the caller does not size `data_out`: XDP may grow a packet
/// at the front by its 256-byte headroom and at the tail up to the page, TC by more; when the
/// kernel still needs more it says so (ENOSPC with the size) and the run is redone.
const DATA_OUT_SLACK: usize = 4096;

/// `ENOTSUPP`, the kernel-internal errno (not in libc) returned for types without a test run.
const ENOTSUPP: i32 = 524;

/// Inputs of a test run. `Default` is one run of no data and no context.
#[derive(Debug, Clone, Default)]
pub struct RunOptions<'a> {
    /// The packet (for XDP, TC, socket filter, flow dissector: an Ethernet frame).
    pub data_in: &'a [u8],
    /// The context (`struct __sk_buff`, `struct xdp_md`, raw_tp arguments, ...); empty for none.
    pub ctx_in: &'a [u8],
    /// Size of the data-out buffer; `None` sizes it so the output always fits.
    pub data_out_size: Option<u32>,
    /// Size of the context-out buffer; `None` means the size of `ctx_in` (grown if needed).
    pub ctx_out_size: Option<u32>,
    /// Runs of the program in this one call (0 and 1 both mean one run).
    pub repeat: u32,
    /// `BPF_F_TEST_*` flags passed through.
    pub flags: u32,
    /// Run on this CPU (`BPF_F_TEST_RUN_ON_CPU`; the kernel allows it for raw_tp only).
    pub cpu: Option<u32>,
    /// XDP live frames (`BPF_F_TEST_XDP_LIVE_FRAMES`): each of the `repeat` runs gets a fresh
    /// copy of the packet, and XDP_TX / XDP_REDIRECT really send it (out of the interface
    /// of the context's `ingress_ifindex`, see [`xdp_md_context`]); no output is returned,
    /// only the duration. `Some(0)` lets the kernel pick the batch size (64), else frames per
    /// batch, at most 256.
    pub live_frames: Option<u32>,
}

/// `BPF_F_TEST_XDP_LIVE_FRAMES`.
pub const LIVE_FRAMES: u32 = 1 << 1;

/// A `struct xdp_md` context for an XDP test run of `packet_len` bytes arriving on interface
/// `ifindex` (what live frames need for XDP_TX to leave through that interface).
pub fn xdp_md_context(packet_len: u32, ifindex: u32) -> Vec<u8> {
    // data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex
    [0, packet_len, 0, ifindex, 0, 0]
        .iter()
        .flat_map(|v: &u32| v.to_le_bytes())
        .collect()
}

/// The index of network interface `dev` in this network namespace (for [`xdp_md_context`]).
pub fn interface_index(dev: &str) -> Result<u32, Error> {
    let path = std::path::Path::new("/sys/class/net")
        .join(dev)
        .join("ifindex");
    std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .ok_or_else(|| Error::NoInterface(dev.to_owned()))
}

/// What one test run returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunOutcome {
    /// The program's return value (for `repeat` > 1, the last run's).
    pub retval: u32,
    /// The packet after the program (its true length).
    pub data_out: Vec<u8>,
    /// The context after the program (for syscall programs, the context buffer written back).
    pub ctx_out: Vec<u8>,
    /// Mean duration of one run as the kernel measured it; `None` for types the kernel does
    /// not time (raw_tp, syscall).
    pub duration: Option<Duration>,
}

/// A program loaded into the kernel, ready to be test-run. Dropping it unloads it.
#[derive(Debug)]
pub struct Program {
    name: String,
    kind: ProgKind,
    fd: OwnedFd,
    maps: HashMap<String, LoadedMap>,
}

impl Program {
    pub(crate) fn new(
        name: String,
        kind: ProgKind,
        fd: OwnedFd,
        maps: HashMap<String, LoadedMap>,
    ) -> Self {
        Program {
            name,
            kind,
            fd,
            maps,
        }
    }

    /// A map of the object, created for this program, to fill or read before and after test
    /// runs with aya's typed maps (`aya::maps::Array::try_from(prog.map("counts")?)`).
    /// Global data sections are maps named after their section (`.data`, `.bss`, ...).
    pub fn map(&self, name: &str) -> Option<&aya::maps::Map> {
        self.maps.get(name).map(|m| &m.typed)
    }

    /// As [`Program::map`], for writing.
    pub fn map_mut(&mut self, name: &str) -> Option<&mut aya::maps::Map> {
        self.maps.get_mut(name).map(|m| &mut m.typed)
    }

    /// Writes entries into map `name` from JSON: a list of `{"key": K, "value": V}`, each a hex
    /// string of the exact size or an unsigned integer (little-endian); a per-CPU map's value
    /// once for every CPU or as a list with one per CPU. Returns how many were written.
    pub fn fill_map(&self, name: &str, json: &str) -> Result<usize, Error> {
        let map = self.raw_map(name)?;
        let entries = maps::parse_entries(name, map, json)?;
        maps::fill(name, map, &entries)?;
        Ok(entries.len())
    }

    /// Every entry of every map of the program, as bytes, by map name.
    pub fn dump_maps(&self) -> Result<Vec<MapDump>, Error> {
        self.map_names()
            .into_iter()
            .map(|name| maps::dump(name, &self.maps[name].raw))
            .collect()
    }

    fn raw_map(&self, name: &str) -> Result<&maps::RawMap, Error> {
        self.maps
            .get(name)
            .map(|m| &m.raw)
            .ok_or_else(|| Error::Map {
                name: name.to_owned(),
                reason: format!(
                    "the program has no such map; its maps are: {}",
                    self.map_names().join(", ")
                ),
            })
    }

    /// The names of the program's maps, sorted.
    pub fn map_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.maps.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The program's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The program's type.
    pub fn kind(&self) -> &ProgKind {
        &self.kind
    }

    /// The program's file descriptor (to pass to other BPF calls).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The name of a return value for this program's type (`XDP_DROP`, `TC_ACT_OK`, ...).
    pub fn verdict(&self, retval: u32) -> String {
        self.kind.verdict(retval)
    }

    /// Runs the program once (or `repeat` times in one call) with `BPF_PROG_TEST_RUN`.
    pub fn run(&self, opts: &RunOptions<'_>) -> Result<RunOutcome, Error> {
        self.check(opts)?;
        let (mut data_cap, mut ctx_cap) = self.buffer_sizes(opts);
        loop {
            match self.call(opts, data_cap, ctx_cap) {
                Ok(result) => return Ok(result),
                Err((out, e)) if e.raw_os_error() == Some(libc::ENOSPC) => {
                    let (grow_data, grow_ctx) = self.no_space(opts, &out, data_cap, ctx_cap)?;
                    data_cap = data_cap.max(grow_data);
                    ctx_cap = ctx_cap.max(grow_ctx);
                }
                Err((_, e)) => return Err(self.decode_error(opts, e)),
            }
        }
    }

    /// The output buffer sizes: the caller's, or big enough for what the type can write.
    fn buffer_sizes(&self, opts: &RunOptions<'_>) -> (usize, usize) {
        if opts.live_frames.is_some() {
            // The kernel refuses output buffers in live mode.
            return (0, 0);
        }
        let ctx_only = self.kind.context_only();
        let data_cap = match opts.data_out_size {
            Some(n) => n as usize,
            // No packet in, no packet out (sk_lookup rejects a data_out buffer).
            None if ctx_only || opts.data_in.is_empty() => 0,
            None => opts.data_in.len() + DATA_OUT_SLACK,
        };
        let ctx_cap = match opts.ctx_out_size {
            Some(n) => n as usize,
            None if ctx_only => 0,
            None => opts.ctx_in.len(),
        };
        (data_cap, ctx_cap)
    }

    /// One system call with output buffers of the given sizes.
    fn call(
        &self,
        opts: &RunOptions<'_>,
        data_cap: usize,
        ctx_cap: usize,
    ) -> Result<RunOutcome, (TestRunOut, std::io::Error)> {
        let ctx_only = self.kind.context_only();
        let mut data_out = vec![0u8; data_cap];
        let mut ctx_in = opts.ctx_in.to_vec();
        let mut ctx_out = vec![0u8; ctx_cap];
        let io = TestRunIo {
            data_in: opts.data_in,
            data_out: &mut data_out,
            ctx_in: &mut ctx_in,
            ctx_out: &mut ctx_out,
            // raw_tp and syscall test runs reject any repeat count, even 1.
            repeat: if ctx_only { 0 } else { opts.repeat },
            flags: opts.flags
                | opts
                    .cpu
                    .map_or(0, |_| aya_obj::generated::BPF_F_TEST_RUN_ON_CPU)
                | opts.live_frames.map_or(0, |_| LIVE_FRAMES),
            cpu: opts.cpu.unwrap_or(0),
            batch_size: opts.live_frames.unwrap_or(0),
        };
        let (out, err) = sys::prog_test_run(self.fd(), io);
        if let Some(e) = err {
            return Err((out, e));
        }
        // With a zero-sized buffer the kernel copies nothing and does not fail, but it still
        // reports the true size: a caller-sized buffer that was too small is ENOSPC all the same.
        let data_short = opts.data_out_size.is_some() && out.data_size_out as usize > data_cap;
        let ctx_short = opts.ctx_out_size.is_some() && out.ctx_size_out as usize > ctx_cap;
        if data_short || ctx_short {
            return Err((out, std::io::Error::from_raw_os_error(libc::ENOSPC)));
        }
        data_out.truncate(out.data_size_out as usize);
        ctx_out.truncate(out.ctx_size_out as usize);
        if self.kind == ProgKind::Syscall {
            // The kernel writes a syscall program's context back into ctx_in.
            ctx_out = ctx_in;
        }
        let duration = (!ctx_only).then(|| Duration::from_nanos(u64::from(out.duration_ns)));
        Ok(RunOutcome {
            retval: out.retval,
            data_out,
            ctx_out,
            duration,
        })
    }

    /// Decides what to do about ENOSPC: grow the buffers tracekit sized, or report the true
    /// size for a buffer the caller sized.
    fn no_space(
        &self,
        opts: &RunOptions<'_>,
        out: &TestRunOut,
        data_cap: usize,
        ctx_cap: usize,
    ) -> Result<(usize, usize), Error> {
        let data_short = out.data_size_out as usize > data_cap;
        let ctx_short = out.ctx_size_out as usize > ctx_cap;
        if data_short && opts.data_out_size.is_some() {
            return Err(Error::NoSpace {
                what: "data_out",
                needed: out.data_size_out,
                given: data_cap as u32,
            });
        }
        if ctx_short && opts.ctx_out_size.is_some() {
            return Err(Error::NoSpace {
                what: "ctx_out",
                needed: out.ctx_size_out,
                given: ctx_cap as u32,
            });
        }
        if !data_short && !ctx_short {
            // ENOSPC without a size to grow to: report it rather than loop.
            return Err(Error::NoSpace {
                what: "data_out",
                needed: out.data_size_out,
                given: data_cap as u32,
            });
        }
        Ok((out.data_size_out as usize, out.ctx_size_out as usize))
    }

    fn check(&self, opts: &RunOptions<'_>) -> Result<(), Error> {
        let bad = |reason: String| Err(self.bad_input(reason));
        if let Some(batch) = opts.live_frames {
            if self.kind != ProgKind::Xdp {
                return bad(format!(
                    "live frames are for XDP programs only, not {}",
                    self.kind
                ));
            }
            if batch > 256 {
                return bad(format!(
                    "a live-frame batch is at most 256 frames, not {batch}"
                ));
            }
            if opts.data_out_size.is_some() || opts.ctx_out_size.is_some() {
                return bad(
                    "live frames return no packet or context: leave the output sizes unset".into(),
                );
            }
        }
        if self.kind.context_only() {
            if !opts.data_in.is_empty() {
                return bad(format!(
                    "{} programs take no packet data; pass the input as context (ctx_in / --ctx-in)",
                    self.kind
                ));
            }
            if opts.repeat > 1 {
                return bad(format!(
                    "the kernel runs {} programs once per call and does not time them; use repeat 1 (and batches for several calls)",
                    self.kind
                ));
            }
        }
        if self.kind.takes_packet() && opts.data_in.len() < 14 {
            return bad(format!(
                "the packet is {} bytes, shorter than an Ethernet header (14 bytes); {} programs need a whole frame starting with the Ethernet header",
                opts.data_in.len(),
                self.kind
            ));
        }
        Ok(())
    }

    fn bad_input(&self, reason: String) -> Error {
        Error::BadInput {
            name: self.name.clone(),
            kind: self.kind.name().to_owned(),
            reason,
        }
    }

    fn decode_error(&self, opts: &RunOptions<'_>, e: std::io::Error) -> Error {
        let errno = e.raw_os_error().unwrap_or(0);
        if errno == ENOTSUPP || errno == libc::EOPNOTSUPP {
            return Error::NotSupported {
                name: self.name.clone(),
                kind: self.kind.name().to_owned(),
            };
        }
        if let (libc::ENXIO, Some(cpu)) = (errno, opts.cpu) {
            return self.bad_input(format!("CPU {cpu} is not online; pick one of the online CPUs (see /sys/devices/system/cpu/online)"));
        }
        if errno == libc::EINVAL {
            let hint = if self.kind.takes_packet() && opts.data_in.len() > 3520 {
                format!(
                    "the packet is {} bytes; the kernel takes at most a page minus head and tail room (about 3.5 KiB for XDP)",
                    opts.data_in.len()
                )
            } else if !opts.ctx_in.is_empty() {
                format!(
                    "the kernel rejected the {}-byte context: it must be a valid struct for this program type, with only the fields the kernel lets test runs set",
                    opts.ctx_in.len()
                )
            } else if opts.cpu.is_some() {
                format!(
                    "the kernel accepts a CPU only for raw_tp test runs, not {}",
                    self.kind
                )
            } else {
                "the kernel rejected the input (EINVAL); check the data and context sizes for this program type".to_owned()
            };
            return self.bad_input(hint);
        }
        Error::TestRun {
            name: self.name.clone(),
            kind: self.kind.name().to_owned(),
            errno: tracekit_core::errno::name(errno),
            error: e,
        }
    }

    /// Measures the program: one cold call (repeat 1) first, then `batches` calls of
    /// `opts.repeat` runs each. The kernel's per-run mean of each batch becomes one sample;
    /// the wall time of each call shows the fixed cost per call the kernel's figure leaves out.
    pub fn benchmark(&self, opts: &RunOptions<'_>, batches: usize) -> Result<Benchmark, Error> {
        self.benchmark_with_progress(opts, batches, |_| {})
    }

    /// [`Program::benchmark`], calling `on_batch` with the number of batches done after each.
    pub fn benchmark_with_progress(
        &self,
        opts: &RunOptions<'_>,
        batches: usize,
        mut on_batch: impl FnMut(usize),
    ) -> Result<Benchmark, Error> {
        let first_opts = RunOptions {
            repeat: 1,
            ..opts.clone()
        };
        let start = Instant::now();
        let first = self.run(&first_opts)?;
        let first_wall = start.elapsed();
        let mut per_run = Samples::new();
        let mut wall = Samples::new();
        let mut last = first.clone();
        for done in 1..=batches {
            let start = Instant::now();
            last = self.run(opts)?;
            wall.push(start.elapsed().as_nanos() as f64);
            if let Some(d) = last.duration {
                per_run.push(d.as_nanos() as f64);
            }
            on_batch(done);
        }
        Ok(Benchmark {
            repeat: opts.repeat.max(1),
            batches,
            first_call_ns: first.duration.map(|d| d.as_nanos() as u64),
            first_call_wall_ns: first_wall.as_nanos() as u64,
            per_run_ns: per_run.summary(),
            wall_per_call_ns: wall.summary(),
            batch_means_ns: per_run.values().to_vec(),
            result: last,
        })
    }
}

/// The outcome of [`Program::benchmark`]. Durations are nanoseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Benchmark {
    /// Runs per call.
    pub repeat: u32,
    /// Number of timed calls.
    pub batches: usize,
    /// The kernel's duration of the first, cold, single run (before the batches).
    pub first_call_ns: Option<u64>,
    /// Wall time of that first call.
    pub first_call_wall_ns: u64,
    /// Statistics over the batches of the kernel's mean duration per run.
    pub per_run_ns: Option<SampleSummary>,
    /// Statistics over the batches of the wall time of one call (all repeats plus the fixed
    /// cost of the system call, buffer copies and, for XDP, the dispatcher switch).
    pub wall_per_call_ns: Option<SampleSummary>,
    /// The kernel's mean per run, batch by batch, in order (warm-up shows as a trend).
    pub batch_means_ns: Vec<f64>,
    /// The result of the last call.
    pub result: RunOutcome,
}

impl Benchmark {
    /// Median wall time per call minus the median time spent running the program in it:
    /// the fixed cost of one test-run call. `None` when there are no timings, or when the
    /// repeat count is so large that the kernel's whole-nanosecond mean makes it meaningless.
    pub fn fixed_cost_per_call_ns(&self) -> Option<f64> {
        let (wall, per_run) = (self.wall_per_call_ns?, self.per_run_ns?);
        // The kernel's mean is whole nanoseconds: repeat × mean may be off by up to `repeat` ns.
        // Past a tenth of the wall time that error swamps the fixed cost: say nothing.
        let uncertainty = f64::from(self.repeat);
        (uncertainty <= wall.median / 10.0)
            .then(|| (wall.median - per_run.median * f64::from(self.repeat)).max(0.0))
    }
}
