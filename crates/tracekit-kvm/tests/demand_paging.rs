//! The demand-paging test on the real /dev/kvm (root in CI), small sizes.

use tracekit_kvm::{
    Backing, CommonOptions, DemandPagingOptions, DemandPagingOutcome, Engine, HandlerMode,
    KVM_DEVICE, Privilege, run_demand_paging,
};

fn config(engine: Engine, vcpus: usize, uffd: Option<HandlerMode>) -> DemandPagingOptions {
    DemandPagingOptions {
        common: CommonOptions {
            engine,
            vcpus,
            bytes_per_vcpu: 4 << 20,
            backing: Backing::Anonymous,
            cpus: None,
            kvm_device: KVM_DEVICE.into(),
            privilege: Privilege::User,
        },
        uffd,
    }
}

fn check(config: &DemandPagingOptions) -> DemandPagingOutcome {
    let vcpus = config.common.vcpus;
    let mut ticks = 0;
    let r = run_demand_paging(config, &mut |_| ticks += 1).unwrap();
    assert!(r.verified, "{:?}", r.verification);
    assert_eq!(r.verification.pages_checked, vcpus as u64 * 1024);
    assert_eq!(r.vcpu_seconds.len(), vcpus);
    assert!(ticks >= 1);
    if let Some(u) = r.uffd {
        assert_eq!(u.copies + u.already_present, vcpus as u64 * 1024);
    }
    r
}

#[test]
fn kvm_one_vcpu_kernel_faults() {
    let r = check(&config(Engine::Kvm, 1, None));
    eprintln!("kvm 1 vcpu: {:.0} pages/s", r.pages_per_sec);
}

#[test]
fn kvm_two_vcpus_uffd() {
    let r = check(&config(Engine::Kvm, 2, Some(HandlerMode::PerVcpu)));
    assert_eq!(r.uffd.unwrap().copies, 2048);
    eprintln!("kvm 2 vcpu uffd: {:.0} pages/s", r.pages_per_sec);
}

#[test]
fn host_variant_with_shared_handler() {
    let r = check(&config(Engine::Host, 2, Some(HandlerMode::Shared)));
    assert_eq!(r.uffd.unwrap().handlers, 1);
}
