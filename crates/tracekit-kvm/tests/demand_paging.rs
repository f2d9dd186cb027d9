//! The demand-paging test on the real /dev/kvm (root in CI), small sizes.

use std::time::Duration;
use tracekit_core::stats::Log2Histogram;
use tracekit_kvm::{
    Backing, COPY_PATTERN, CommonOptions, DemandPagingOptions, DemandPagingOutcome, Engine,
    FaultKind, HandlerMode, KVM_DEVICE, Privilege, UffdOptions, run_demand_paging,
};

fn uffd(mode: HandlerMode) -> Option<UffdOptions> {
    Some(UffdOptions::new(mode))
}

fn config(engine: Engine, vcpus: usize, uffd: Option<UffdOptions>) -> DemandPagingOptions {
    DemandPagingOptions {
        common: CommonOptions {
            engine,
            vcpus,
            bytes_per_vcpu: 4 << 20,
            backing: Backing::Anonymous,
            cpus: None,
            kvm_device: KVM_DEVICE.into(),
            privilege: Privilege::User,
            overlap: false,
            slots: 1,
            gpa: None,
        },
        uffd,
    }
}

fn check(config: &DemandPagingOptions) -> DemandPagingOutcome {
    let vcpus = config.common.vcpus;
    let mut ticks = 0;
    let r = run_demand_paging(config, &mut |_| ticks += 1).unwrap();
    assert!(r.verified, "{:?}", r.verification);
    assert_eq!(r.verification.pages_checked, r.pages_visited);
    let overlap = if config.common.overlap { vcpus } else { 1 };
    assert_eq!(r.pages_visited, (vcpus * overlap) as u64 * 1024);
    assert_eq!(r.vcpu_seconds.len(), vcpus);
    assert!(ticks >= 1);
    if let Some(u) = &r.uffd {
        let host_pages = r.total_pages * 4096 / r.backing.page_size();
        assert_eq!(u.copies, host_pages, "each host page resolved exactly once");
        assert_eq!(u.faults, u.copies + u.already_present);
        assert_eq!(
            u.fault_latency_ns.total(),
            u.faults,
            "one histogram entry per fault"
        );
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
    let r = check(&config(Engine::Kvm, 2, uffd(HandlerMode::PerVcpu)));
    assert_eq!(r.uffd.unwrap().copies, 2048);
    eprintln!("kvm 2 vcpu uffd: {:.0} pages/s", r.pages_per_sec);
}

#[test]
fn host_variant_with_shared_handler() {
    let r = check(&config(Engine::Host, 2, uffd(HandlerMode::Shared)));
    assert_eq!(r.uffd.unwrap().handlers, 1);
}

/// The guest's own timing of its pass (TSC) is inside the host's timing of the same vCPU, and
/// most of it: the host adds only thread start and the sync exit.
#[test]
fn guest_times_its_pass_inside_the_host_time() {
    let r = check(&config(Engine::Kvm, 2, None));
    let guest = r.guest_seconds.as_ref().expect("a guest timed its pass");
    for (g, h) in guest.iter().zip(&r.vcpu_seconds) {
        assert!(*g > 0.0 && g <= h, "guest {g} s, host {h} s");
    }
    let host = check(&config(Engine::Host, 1, None));
    assert!(host.guest_seconds.is_none());
}

/// -u MINOR: every page is in the page cache (holding the pattern) before the run, each guest
/// touch is a minor fault served by exactly one UFFDIO_CONTINUE, and the page keeps its
/// contents: the pattern in its tail, the guest's write in its head.
#[test]
fn minor_faults_are_continued_and_keep_the_contents() {
    let mut c = config(Engine::Kvm, 2, None);
    c.common.backing = Backing::Shared;
    c.uffd = Some(UffdOptions {
        kind: FaultKind::Minor,
        ..UffdOptions::new(HandlerMode::PerVcpu)
    });
    let r = check(&c);
    let u = r.uffd.unwrap();
    assert_eq!(
        (u.kind, u.copies, u.already_present),
        (FaultKind::Minor, 2048, 0)
    );
    assert_eq!(r.verification.mismatches, 0, "tails hold {COPY_PATTERN:#x}");
}

#[test]
fn minor_faults_on_private_memory_are_refused() {
    let mut c = config(Engine::Kvm, 1, None);
    c.uffd = Some(UffdOptions {
        kind: FaultKind::Minor,
        ..UffdOptions::new(HandlerMode::PerVcpu)
    });
    let err = run_demand_paging(&c, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("minor faults need shared memory"), "{err}");
}

/// Transparent huge pages: the host page is 2 MiB, so 4 MiB per vCPU is 2 faults each, served
/// by 2 MiB UFFDIO_COPYs.
#[test]
fn thp_backing_faults_in_huge_pages() {
    let mut c = config(Engine::Kvm, 2, uffd(HandlerMode::PerVcpu));
    c.common.backing = Backing::AnonymousThp;
    let r = check(&c);
    assert_eq!(r.uffd.unwrap().copies, 4);
}

/// Several readers on one uffd still resolve each page exactly once (the others see EEXIST or
/// nothing), and a handler delay shows in every fault's latency.
#[test]
fn readers_and_delay() {
    let mut c = config(Engine::Kvm, 1, None);
    c.common.bytes_per_vcpu = 1 << 20;
    c.uffd = Some(UffdOptions {
        readers: 3,
        delay: Duration::from_micros(200),
        ..UffdOptions::new(HandlerMode::Shared)
    });
    let mut ticks = 0;
    let r = run_demand_paging(&c, &mut |_| ticks += 1).unwrap();
    assert!(r.verified);
    let u = r.uffd.unwrap();
    assert_eq!((u.handlers, u.readers_per_uffd, u.copies), (3, 3, 256));
    let floor = Log2Histogram::bucket_of(200_000);
    let below: u64 = u.fault_latency_ns.buckets[..floor].iter().sum();
    assert_eq!(
        below, 0,
        "every fault waited 200 us: {:?}",
        u.fault_latency_ns
    );
    assert_eq!(u.fault_latency_ns.total(), u.faults);
}

/// -o: both vCPUs visit all 2048 pages (memstress's overlap); one uffd (asked for one per
/// vCPU) resolves each page exactly once, the other vCPU finds it present or faults in vain.
#[test]
fn overlapping_vcpus_share_one_uffd() {
    let mut c = config(Engine::Kvm, 2, uffd(HandlerMode::PerVcpu));
    c.common.overlap = true;
    let r = check(&c);
    let u = r.uffd.unwrap();
    assert_eq!((u.uffds, u.copies), (1, 2048));
    assert_eq!((r.total_pages, r.pages_visited), (2048, 4096));
}
