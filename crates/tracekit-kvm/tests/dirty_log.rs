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
            overlap: false,
            slots: 1,
            gpa: None,
        },
        iterations: 2,
        wr_fract,
        manual_protect,
        write_percent: None,
        random_access: false,
        seed: 1,
        dirty_while_disabling: false,
    }
}

/// -w 0/50/100: no page, about half, every page dirty; the host replays the guest's generator,
/// so the bitmap is compared bit for bit, and each page holds its last write.
#[test]
fn write_percentage_dirties_exactly_the_drawn_pages() {
    let mut seen = Vec::new();
    for percent in [0, 50, 100] {
        let mut c = config(2, 1, true);
        c.write_percent = Some(percent);
        let r = run_dirty_log(&c, &mut |_| {}).unwrap();
        assert_eq!(r.bitmap_exact, Some(true), "-w {percent}");
        assert!(r.verified, "{:?}", r.verification);
        for it in &r.iterations {
            assert_eq!(it.dirty_pages, Some(it.expected_dirty_pages));
        }
        seen.push(r.iterations[0].expected_dirty_pages);
    }
    assert_eq!((seen[0], seen[2]), (0, 1024));
    assert!((400..624).contains(&seen[1]), "{seen:?}");
}

/// -a: random pages, drawn with replacement; the bitmap is exactly the drawn set, which is a
/// strict subset of the pages (about 1 - 1/e of them), and the same seed draws the same pages.
#[test]
fn random_access_dirties_exactly_the_drawn_pages() {
    let run = |seed| {
        let mut c = config(1, 1, true);
        (c.random_access, c.seed) = (true, seed);
        let r = run_dirty_log(&c, &mut |_| {}).unwrap();
        assert_eq!(r.bitmap_exact, Some(true));
        assert!(r.verified, "{:?}", r.verification);
        r.iterations[0].expected_dirty_pages
    };
    let pages = run(7);
    assert!((280..380).contains(&pages), "{pages} of 512");
    assert_eq!(run(7), pages);
}

#[test]
fn write_percentage_and_memslots_need_the_guest() {
    let mut c = config(1, 1, true);
    c.common.engine = Engine::Host;
    c.write_percent = Some(50);
    let err = run_dirty_log(&c, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("needs the guest"), "{err}");
    (c.write_percent, c.common.slots) = (None, 2);
    let err = run_dirty_log(&c, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("have no memslots"), "{err}");
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

/// -o: two vCPUs each writing all 1024 pages dirty 1024 bits, not 2048; with -w 50 each page
/// is dirty when either vCPU wrote it, which the replay knows exactly.
#[test]
fn overlapping_vcpus_dirty_one_region() {
    for percent in [None, Some(50)] {
        let mut c = config(2, 1, true);
        (c.common.overlap, c.write_percent) = (true, percent);
        let r = run_dirty_log(&c, &mut |_| {}).unwrap();
        assert_eq!(r.bitmap_exact, Some(true));
        let dirty = r.iterations[0].expected_dirty_pages;
        match percent {
            None => assert_eq!(dirty, 1024),
            // Dirty unless both vCPUs read it: about 75% of the pages.
            Some(_) => assert!((700..840).contains(&dirty), "{dirty}"),
        }
        assert!(r.verified, "{:?}", r.verification);
    }
}

/// -x 4: the 1024 pages in 4 memslots; each slot's log is collected (and cleared) on its own
/// and the joined bitmap is exact, with a write percentage so the bits differ slot by slot.
#[test]
fn several_memslots_log_exactly() {
    for manual in [true, false] {
        let mut c = config(2, 1, manual);
        (c.common.slots, c.write_percent) = (4, Some(50));
        let r = run_dirty_log(&c, &mut |_| {}).unwrap();
        assert_eq!((r.memslots, r.bitmap_exact), (Some(4), Some(true)));
        assert!(
            r.iterations
                .iter()
                .all(|i| i.dirty_pages == Some(i.expected_dirty_pages))
        );
        assert!(r.verified, "{:?}", r.verification);
    }
}

#[test]
fn memslot_counts_kvm_cannot_take_are_refused() {
    let max = tracekit_kvm::vm::max_memslots(std::path::Path::new(KVM_DEVICE)).unwrap();
    for (slots, message) in [
        (0, "0 memslots requested"),
        (max, "the guest's code and page tables take one"),
        (3, "do not split into 3 memslots"),
    ] {
        let mut c = config(1, 1, true);
        c.common.slots = slots;
        let err = run_dirty_log(&c, &mut |_| {}).unwrap_err().to_string();
        assert!(err.contains(message), "{slots}: {err}");
    }
}

/// -e: the vCPUs keep dirtying while logging is disabled; every vCPU completes at least one
/// more pass, and every page then holds the value of that extra iteration (the host replays
/// each vCPU's passes, random pages included).
#[test]
fn vcpus_dirty_memory_while_logging_is_disabled() {
    for random in [false, true] {
        let mut c = config(2, 1, true);
        (c.dirty_while_disabling, c.random_access, c.write_percent) =
            (true, random, random.then_some(50));
        let r = run_dirty_log(&c, &mut |_| {}).unwrap();
        let passes = r.passes_while_disabling.clone().unwrap();
        assert_eq!(passes.len(), 2);
        assert!(passes.iter().all(|&p| p >= 1), "{passes:?}");
        assert!(r.disable_seconds.is_some());
        assert_eq!(r.bitmap_exact, Some(true));
        assert!(r.verified, "random {random}: {:?}", r.verification);
    }
    let mut c = config(1, 1, true);
    (c.dirty_while_disabling, c.common.engine) = (true, Engine::Host);
    let err = run_dirty_log(&c, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("needs the guest"), "{err}");
}

/// --gpa: the test memory lands where asked (low, under 4 GiB, and above), every bitmap is still
/// exact and every page verified; addresses that are unaligned, inside low memory or past the
/// end of guest physical memory are refused with the range to choose from.
#[test]
fn test_memory_goes_at_the_guest_physical_address_asked() {
    for gpa in [1 << 20, 0x8000_0000, 1 << 32] {
        let mut c = config(2, 1, true);
        c.common.gpa = Some(gpa);
        let r = run_dirty_log(&c, &mut |_| {}).unwrap();
        assert_eq!(r.test_gpa, Some(gpa));
        assert_eq!(r.bitmap_exact, Some(true), "{gpa:#x}");
        assert!(r.verified, "{gpa:#x}: {:?}", r.verification);
    }
    for (gpa, why) in [
        (0x10_0001, "not a multiple"),
        (0x1000, "overlaps the guest's low memory"),
        (1 << 60, "past the end of guest physical memory"),
    ] {
        let mut c = config(1, 1, true);
        c.common.gpa = Some(gpa);
        let err = run_dirty_log(&c, &mut |_| {}).unwrap_err().to_string();
        assert!(
            err.contains(why) && err.contains("choose an address"),
            "{err}"
        );
    }
}
