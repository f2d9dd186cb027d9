//! The dirty-logging test on the real /dev/kvm (root in CI), small sizes.

use tracekit_kvm::{
    Backing, CommonOptions, DirtyLogOptions, Engine, Error, KVM_DEVICE, Privilege, run_dirty_log,
};

fn config(vcpus: usize, wr_fract: u64, manual_protect: bool) -> DirtyLogOptions {
    DirtyLogOptions {
        common: CommonOptions {
            engine: Engine::Kvm,
            vcpus,
            bytes_per_vcpu: 2 << 20,
            backing: Backing::Anonymous,
            cpus: None,
            kvm_device: KVM_DEVICE.into(),
            privilege: Privilege::User,
        },
        iterations: 2,
        wr_fract,
        manual_protect,
    }
}

#[test]
fn every_iteration_reports_exactly_the_written_pages() {
    for (vcpus, wr_fract, manual) in [(1, 1, true), (2, 2, true), (2, 5, false)] {
        let r = run_dirty_log(&config(vcpus, wr_fract, manual), &mut |_| {}).unwrap();
        let per_vcpu = 512u64.div_ceil(wr_fract);
        assert_eq!(r.expected_dirty_pages, per_vcpu * vcpus as u64);
        assert_eq!(r.iterations.len(), 2);
        for it in &r.iterations {
            assert_eq!(
                (it.dirty_pages, it.bitmap_exact),
                (Some(per_vcpu * vcpus as u64), Some(true)),
                "{vcpus} {wr_fract}"
            );
            assert_eq!(it.clear_log_seconds.is_some(), r.manual_protect);
        }
        assert!(r.verified, "{:?}", r.verification);
    }
}

#[test]
fn host_threads_dirty_the_same_pages_without_a_log() {
    let mut c = config(2, 3, true);
    c.common.engine = Engine::Host;
    let r = run_dirty_log(&c, &mut |_| {}).unwrap();
    assert_eq!(
        (r.bitmap_exact, r.manual_protect, r.enable_seconds),
        (None, false, None)
    );
    assert!(
        r.iterations
            .iter()
            .all(|i| i.dirty_pages.is_none() && i.vcpu_seconds.len() == 2)
    );
    assert!(r.verified, "{:?}", r.verification);
}

#[test]
fn zero_iterations_are_refused() {
    let mut c = config(1, 1, true);
    c.iterations = 0;
    assert!(matches!(
        run_dirty_log(&c, &mut |_| {}),
        Err(Error::Invalid(_))
    ));
}
