//! What the BPF engine plans without the kernel: which entry attachments probes share.

use super::*;
use crate::spec::ProbeSpec;
use crate::symbols::{Lookup, resolve_with};

fn resolve_all(specs: &[String]) -> Vec<ResolvedProbe> {
    let target = crate::test_support::target();
    let lookup = Lookup {
        pid: None,
        command: Some(target.clone()),
    };
    ProbeSpec::parse_all(specs)
        .unwrap()
        .iter()
        .map(|s| resolve_with(s, &lookup).unwrap())
        .collect()
}

#[test]
fn plan_shares_entry_attachments() {
    let t = crate::test_support::target().display().to_string();
    let probes = resolve_all(&[
        format!("{t}:tk_empty"),
        format!("uprobe:{t}:tk_empty"),
        format!("uretprobe:{t}:tk_push"),
    ]);
    let plan = plan_entries(&probes);
    assert_eq!(plan.len(), 3);
    assert_eq!((plan[0].hit, plan[0].stamp), (Some(0), Some(1)));
    assert_eq!((plan[1].hit, plan[1].stamp), (Some(2), None));
    assert_eq!((plan[2].hit, plan[2].stamp), (None, Some(3)));
    assert_eq!(plan[0].cookie(), 1 | (2 << 16));
}
