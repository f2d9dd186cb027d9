//! The HTTP side: `/metrics` in the Prometheus text format or OpenMetrics (by `Accept`), and
//! a short page on `/`. Requests are answered one at a time on the caller's thread: a scrape
//! reads the kernel maps through the one tracer.

use crate::metrics::{Limits, SeriesBook, Snapshot};
use crate::{Error, Options};
use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tiny_http::{Header, Request, Response, Server};
use tracekit_summary::{TaskFilter, Tracer};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A listening, attached exporter.
pub struct Exporter {
    server: Server,
    tracer: Tracer,
    probes: Option<tracekit_probe::bpf::Session>,
    options: Options,
    book: SeriesBook,
    last_scrape: Duration,
}

impl Exporter {
    /// Listens on `options.listen` (before anything is loaded, so a bad address costs
    /// nothing) and attaches the kernel side.
    pub fn start(options: &Options) -> Result<Exporter, Error> {
        let server = Server::http(options.listen).map_err(|e| listen_error(options.listen, &*e))?;
        let summary = tracekit_summary::Options {
            mode: options.by.mode(),
            hist: true,
            errno: true,
            latency: true,
            filter: if options.pids.is_empty() {
                TaskFilter::All
            } else {
                TaskFilter::Processes
            },
            ..options.summary.clone()
        };
        let mut tracer = Tracer::attach(&summary)?;
        for &pid in &options.pids {
            tracer.trace_tgid(pid)?;
        }
        let probes = attach_probes(options)?;
        Ok(Exporter {
            server,
            tracer,
            probes,
            options: options.clone(),
            book: SeriesBook::default(),
            last_scrape: Duration::ZERO,
        })
    }

    /// The address it listens on (the port the system chose, for port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server.server_addr().to_ip()
    }

    /// Answers requests until `stop` is set (SIGTERM, Ctrl-C).
    pub fn serve(&mut self, stop: &AtomicBool) -> Result<(), Error> {
        while !stop.load(Ordering::Relaxed) {
            match self.server.recv_timeout(Duration::from_millis(100)) {
                Ok(Some(request)) => self.answer(request)?,
                Ok(None) => {}
                // A signal interrupting the wait is not an error: the loop checks `stop`.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Error::Listen {
                        addr: self.options.listen,
                        reason: e.to_string(),
                        hint: "the listening socket failed; restart the exporter",
                    });
                }
            }
        }
        Ok(())
    }

    fn answer(&mut self, request: Request) -> Result<(), Error> {
        let response = match request.url() {
            "/metrics" => {
                let openmetrics = request.headers().iter().any(|h| {
                    h.field.equiv("Accept")
                        && h.value.as_str().contains("application/openmetrics-text")
                });
                let (body, content_type) = self.scrape(openmetrics)?;
                Response::from_string(body).with_header(header(content_type))
            }
            "/" => Response::from_string(INDEX).with_header(header("text/html; charset=utf-8")),
            _ => Response::from_string("not found: the metrics are on /metrics\n")
                .with_status_code(404),
        };
        // A client that went away is its own business.
        let _ = request.respond(response);
        Ok(())
    }

    /// Reads the kernel maps and encodes them.
    fn scrape(&mut self, openmetrics: bool) -> Result<(String, &'static str), Error> {
        let started = Instant::now();
        let summary = self.tracer.read_counts()?;
        let limits = Limits {
            max_series: self.options.max_series,
            expire: self.options.expire,
        };
        let probes = match &self.probes {
            Some(session) => {
                session
                    .report()
                    .map_err(|e| Error::Probe(e.to_string()))?
                    .probes
            }
            None => Vec::new(),
        };
        let snapshot = Snapshot::build(&summary, self.options.by, limits, &mut self.book)
            .with_probes(probes)
            .with_scrape_seconds(self.last_scrape.as_secs_f64());
        let mut registry = Registry::default();
        registry.register_collector(Box::new(snapshot));
        let mut body = String::new();
        let content_type = if openmetrics {
            text::encode(&mut body, &registry).map(|_| OPENMETRICS)
        } else {
            prometheus_text::encode(&mut body, &registry).map(|_| prometheus_text::CONTENT_TYPE)
        }
        .unwrap_or(prometheus_text::CONTENT_TYPE);
        self.last_scrape = started.elapsed();
        Ok((body, content_type))
    }
}

/// Places and attaches the user probes (in the first of `options.pids`, or in every process).
fn attach_probes(options: &Options) -> Result<Option<tracekit_probe::bpf::Session>, Error> {
    use tracekit_probe::{Lookup, ProbeSpec, resolve_with};
    if options.probes.is_empty() {
        return Ok(None);
    }
    let fail = |e: &dyn std::fmt::Display| Error::Probe(e.to_string());
    let specs = ProbeSpec::parse_all(&options.probes).map_err(|e| fail(&e))?;
    let pid = options.pids.first().copied();
    let lookup = Lookup { pid, command: None };
    let resolved = specs
        .iter()
        .map(|s| resolve_with(s, &lookup))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(&e))?;
    let session = tracekit_probe::bpf::Session::attach(
        &resolved,
        pid.unwrap_or(0),
        &tracekit_probe::bpf::BpfOptions::default(),
    )
    .map_err(|e| fail(&e))?;
    Ok(Some(session))
}

/// Starts an exporter and serves until `stop`.
pub fn serve(options: &Options, stop: &AtomicBool) -> Result<(), Error> {
    Exporter::start(options)?.serve(stop)
}

fn header(content_type: &str) -> Header {
    Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes()).expect("a valid header")
}

fn listen_error(addr: SocketAddr, e: &(dyn std::error::Error + 'static)) -> Error {
    let kind = e.downcast_ref::<std::io::Error>().map(std::io::Error::kind);
    let hint = match kind {
        Some(std::io::ErrorKind::AddrInUse) => {
            "another program (another exporter?) uses that port: choose another with --listen"
        }
        Some(std::io::ErrorKind::AddrNotAvailable) => {
            "that address is not one of this machine's: use 127.0.0.1, or 0.0.0.0 for every interface"
        }
        Some(std::io::ErrorKind::PermissionDenied) => "ports below 1024 need root",
        _ => "check the address and port given to --listen",
    };
    Error::Listen {
        addr,
        reason: e.to_string(),
        hint,
    }
}

const INDEX: &str = "<!doctype html>\n<html><head><title>tracekit exporter</title></head>\n\
<body><h1>tracekit exporter</h1>\n\
<p>Syscall statistics measured in the kernel by BPF: <a href=\"/metrics\">/metrics</a>.</p>\n\
</body></html>\n";
