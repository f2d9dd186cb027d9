//! Damaged objects are errors, never panics. Each file in tests/damaged/ is
//! bpf/obj/xdp_port_filter.bpf.o with up to six random bytes changed (a mutation run), on which
//! aya-obj 0.3 panicked (obj.rs:675 twice, btf.rs:1095: slices indexed with offsets read from
//! the file); tracekit must name the file and say it is damaged.

use std::path::Path;
use tracekit_prog::{BpfObject, Error};

#[test]
fn objects_that_panicked_aya_obj_are_clear_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/damaged");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.display().to_string();
        // Listing reads the object with tracekit's own parsers; loading goes through aya-obj.
        let mut object = BpfObject::from_file(&path).unwrap();
        object.check_loads();
        let err = object.load("xdp_port_filter").unwrap_err();
        let Error::Parse { what, reason } = &err else {
            panic!("{name}: {err}");
        };
        assert_eq!(what, &name);
        assert!(
            reason.starts_with("the object is damaged: aya-obj failed while "),
            "{reason}"
        );
        checked += 1;
    }
    assert_eq!(checked, 3);
}
