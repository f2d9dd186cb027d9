//! Test vectors: a TOML file of cases (program, input, expected retval and output) run as a
//! suite, from `tracekit prog test FILE` or from a Rust test:
//!
//! ```no_run
//! let report = tracekit_prog::vectors::Suite::from_file("bpf/vectors/xdp_port_filter.toml")?.run()?;
//! assert!(report.all_passed(), "{:#?}", report.failures());
//! # Ok::<(), tracekit_prog::Error>(())
//! ```
//!
//! The format (paths are relative to the TOML file):
//!
//! ```toml
//! object = "../obj/xdp_port_filter.bpf.o"   # default for every case
//! program = "xdp_port_filter"               # default for every case
//!
//! [[case]]
//! name = "UDP to 9999 is dropped"
//! packet = { proto = "udp", dst_port = 9999 }   # fields (see packet::PacketSpec) ...
//! # data_hex = "02 00 00 ..."                   # ... or the packet in hex
//! expect_retval = "XDP_DROP"                    # name or number
//! expect_data_hex = "..."                       # optional: the whole output packet
//! expect_fields = { "ip.tos" = 184 }            # optional: fields of the output packet
//! ```
//!
//! A case may also set `ctx_hex`, `expect_ctx_hex`, `data_out_size`, and `expect_error` (a
//! piece of the error message expected instead of a result, e.g. `"ENOSPC"`).

use crate::packet::{self, PacketSpec};
use crate::{BpfObject, Error, Program, RunOptions, hex};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// An expected return value: a number or a verdict name such as `XDP_DROP`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Retval {
    /// A number (negative numbers are taken as their u32 bits, so -1 is TC_ACT_UNSPEC).
    Number(i64),
    /// A verdict name.
    Name(String),
}

/// One case of a suite.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What the case checks.
    pub name: String,
    /// The object file (default: the suite's).
    pub object: Option<PathBuf>,
    /// The program (default: the suite's).
    pub program: Option<String>,
    /// The input packet by fields.
    pub packet: Option<PacketSpec>,
    /// The input packet in hex.
    pub data_hex: Option<String>,
    /// The input context in hex.
    pub ctx_hex: Option<String>,
    /// Size of the data-out buffer (to test ENOSPC).
    pub data_out_size: Option<u32>,
    /// Expected return value.
    pub expect_retval: Option<Retval>,
    /// Expected output packet in hex.
    pub expect_data_hex: Option<String>,
    /// Expected fields of the output packet (see [`packet::fields`]).
    #[serde(default)]
    pub expect_fields: BTreeMap<String, toml::Value>,
    /// Expected output context in hex.
    pub expect_ctx_hex: Option<String>,
    /// A piece of the error message expected instead of a result.
    pub expect_error: Option<String>,
}

impl Case {
    /// Whether the case checks anything at all.
    pub fn expects_anything(&self) -> bool {
        self.expect_retval.is_some()
            || self.expect_data_hex.is_some()
            || !self.expect_fields.is_empty()
            || self.expect_ctx_hex.is_some()
            || self.expect_error.is_some()
    }
}

/// A file of cases.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    /// Default object for the cases.
    pub object: Option<PathBuf>,
    /// Default program for the cases.
    pub program: Option<String>,
    /// The cases.
    #[serde(rename = "case", default)]
    pub cases: Vec<Case>,
    /// The folder relative paths are resolved against.
    #[serde(skip)]
    base: PathBuf,
    /// The file, for messages.
    #[serde(skip)]
    path: PathBuf,
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// The program it ran.
    pub program: String,
    /// Whether every expectation held.
    pub passed: bool,
    /// The return value and its name, when the run succeeded.
    pub retval: Option<u32>,
    /// The verdict name.
    pub verdict: Option<String>,
    /// What did not hold, one line each.
    pub failures: Vec<String>,
}

/// The outcome of a suite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SuiteReport {
    /// The file.
    pub file: String,
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed.
    pub failed: usize,
    /// Every case, in file order.
    pub cases: Vec<CaseResult>,
}

impl SuiteReport {
    /// Whether every case passed.
    pub fn all_passed(&self) -> bool {
        self.failed == 0
    }

    /// The failed cases.
    pub fn failures(&self) -> Vec<&CaseResult> {
        self.cases.iter().filter(|c| !c.passed).collect()
    }
}

impl Suite {
    /// Reads a suite.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let err = |reason: String| Error::Vectors {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let mut suite: Suite = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        if suite.cases.is_empty() {
            return Err(err(
                "no [[case]] tables; see `tracekit prog test --help` for the format".to_owned(),
            ));
        }
        // A case that expects nothing would pass whatever the program does.
        if let Some(c) = suite.cases.iter().find(|c| !c.expects_anything()) {
            return Err(err(format!(
                "case '{}' expects nothing, so it could never fail; add expect_retval, \
                 expect_data_hex, expect_fields, expect_ctx_hex or expect_error",
                c.name
            )));
        }
        suite.base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        suite.path = path.to_path_buf();
        Ok(suite)
    }

    /// Runs every case. Errors that concern one case (bad packet, kernel refusal) fail that
    /// case; only an unreadable or malformed suite is an `Err`.
    pub fn run(&self) -> Result<SuiteReport, Error> {
        let mut programs: HashMap<(PathBuf, String), Result<Program, String>> = HashMap::new();
        let mut cases = Vec::new();
        for case in &self.cases {
            let (object, name) = self.target(case)?;
            let prog = programs
                .entry((object.clone(), name.clone()))
                .or_insert_with(|| {
                    BpfObject::from_file(&object)
                        .and_then(|o| o.load(&name))
                        .map_err(|e| e.to_string())
                });
            let result = match prog {
                Ok(prog) => run_case(prog, case),
                Err(e) => CaseResult::failed(case, &name, e.clone()),
            };
            cases.push(result);
        }
        let passed = cases.iter().filter(|c| c.passed).count();
        Ok(SuiteReport {
            file: self.path.display().to_string(),
            passed,
            failed: cases.len() - passed,
            cases,
        })
    }

    fn target(&self, case: &Case) -> Result<(PathBuf, String), Error> {
        let err = |what: &str| Error::Vectors {
            path: self.path.clone(),
            reason: format!(
                "case '{}' names no {what}; set `{what} = ...` in the case or at the top of the file",
                case.name
            ),
        };
        let object = case
            .object
            .as_ref()
            .or(self.object.as_ref())
            .ok_or_else(|| err("object"))?;
        let program = case
            .program
            .as_ref()
            .or(self.program.as_ref())
            .ok_or_else(|| err("program"))?;
        Ok((self.base.join(object), program.clone()))
    }
}

impl CaseResult {
    fn failed(case: &Case, program: &str, why: String) -> Self {
        CaseResult {
            name: case.name.clone(),
            program: program.to_owned(),
            passed: false,
            retval: None,
            verdict: None,
            failures: vec![why],
        }
    }
}

fn case_input(case: &Case) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let data = match (&case.packet, &case.data_hex) {
        (Some(_), Some(_)) => {
            return Err(Error::Packet(
                "give either `packet` or `data_hex`, not both".to_owned(),
            ));
        }
        (Some(spec), None) => spec.build()?,
        (None, Some(text)) => hex::parse(text)?,
        (None, None) => Vec::new(),
    };
    let ctx = case
        .ctx_hex
        .as_deref()
        .map(hex::parse)
        .transpose()?
        .unwrap_or_default();
    Ok((data, ctx))
}

fn run_case(prog: &Program, case: &Case) -> CaseResult {
    let (data, ctx) = match case_input(case) {
        Ok(input) => input,
        Err(e) => return CaseResult::failed(case, prog.name(), e.to_string()),
    };
    let opts = RunOptions {
        data_in: &data,
        ctx_in: &ctx,
        data_out_size: case.data_out_size,
        ..Default::default()
    };
    let out = match (prog.run(&opts), &case.expect_error) {
        (Err(e), Some(want)) if e.to_string().contains(want.as_str()) => {
            return CaseResult {
                failures: vec![],
                passed: true,
                ..CaseResult::failed(case, prog.name(), String::new())
            };
        }
        (Err(e), _) => return CaseResult::failed(case, prog.name(), e.to_string()),
        (Ok(_), Some(want)) => {
            return CaseResult::failed(
                case,
                prog.name(),
                format!("expected an error containing '{want}', the run succeeded"),
            );
        }
        (Ok(out), None) => out,
    };
    let mut failures = Vec::new();
    if let Some(want) = &case.expect_retval {
        check_retval(prog, want, out.retval, &mut failures);
    }
    if let Some(want) = &case.expect_data_hex {
        check_bytes("data_out", want, &out.data_out, &mut failures);
    }
    if let Some(want) = &case.expect_ctx_hex {
        check_bytes("ctx_out", want, &out.ctx_out, &mut failures);
    }
    let fields = packet::fields(&out.data_out);
    for (name, want) in &case.expect_fields {
        let want = match want {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match fields.get(name) {
            Some(got) if *got == want => {}
            Some(got) => failures.push(format!("{name}: expected {want}, got {got}")),
            None => failures.push(format!(
                "{name}: not in the output packet (fields there: {})",
                fields.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
        }
    }
    CaseResult {
        name: case.name.clone(),
        program: prog.name().to_owned(),
        passed: failures.is_empty(),
        retval: Some(out.retval),
        verdict: Some(prog.verdict(out.retval)),
        failures,
    }
}

fn check_retval(prog: &Program, want: &Retval, got: u32, failures: &mut Vec<String>) {
    let want_num = match want {
        Retval::Number(n) => Some(*n as u32),
        Retval::Name(name) => prog.kind().parse_verdict(name),
    };
    match want_num {
        Some(n) if n == got => {}
        Some(n) => failures.push(format!(
            "retval: expected {n} ({}), got {got} ({})",
            prog.verdict(n),
            prog.verdict(got)
        )),
        None => {
            let name = match want {
                Retval::Name(n) => n.as_str(),
                Retval::Number(_) => unreachable!("numbers always parse"),
            };
            let names = prog.kind().verdict_names();
            let choices = if names.is_empty() {
                "a number".to_owned()
            } else {
                format!("one of {} or a number", names.join(", "))
            };
            failures.push(format!(
                "retval: '{name}' is not a return value of {} programs; use {choices}",
                prog.kind()
            ))
        }
    }
}

fn check_bytes(what: &str, want_hex: &str, got: &[u8], failures: &mut Vec<String>) {
    match hex::parse(want_hex) {
        Ok(want) if want == got => {}
        Ok(want) => {
            let first = hex::changed_offsets(&want, got)
                .first()
                .copied()
                .unwrap_or(want.len().min(got.len()));
            failures.push(format!(
                "{what}: expected {} bytes {}, got {} bytes {} (first difference at offset {first})",
                want.len(),
                hex::encode(&want),
                got.len(),
                hex::encode(got)
            ));
        }
        Err(e) => failures.push(format!("expect_{what}_hex: {e}")),
    }
}
