//! Which pages a pass visits and which of those it writes, as the guest decides and as the host
//! replays it exactly (to know the dirty bitmap and each page's last write before checking).
//!
//! Two patterns, both the selftests': the 2020 seed's `wr_fract` (sequential, write every
//! `wr_fract`-th page, read the others) and memstress's write percentage with optional random
//! access (dirty_log_perf_test's `-w` and `-a`): for each of the pass's `pages` accesses, the page
//! is `guest_random_u32() % pages` (random access) or the next one, and it is written when
//! `guest_random_u32() % 100 < write_percent`. The generator is memstress's (Park–Miller,
//! `state = state * 48271 % (2^31 - 1)`), seeded per vCPU with `seed + vcpu index`, its state
//! carried from pass to pass, so the same seed gives the same pages as the selftest.

use serde::Serialize;

/// How a pass chooses and writes pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AccessPattern {
    /// `Some(p)`: write with probability `p`% per access (0..=100, memstress's
    /// write_percent); `None`: write every `wr_fract`-th page.
    pub write_percent: Option<u8>,
    /// Pick each access's page at random (with replacement, like memstress) instead of in order.
    pub random: bool,
    /// With `write_percent: None`: write one page in `wr_fract`.
    pub wr_fract: u64,
}

impl AccessPattern {
    /// Every page in order, every page written: the seed's default.
    pub const WRITE_ALL: AccessPattern = AccessPattern {
        write_percent: None,
        random: false,
        wr_fract: 1,
    };

    /// Whether the pass draws random numbers (so the host must track the generator's state).
    pub fn draws(&self) -> bool {
        self.write_percent.is_some() || self.random
    }
}

/// memstress's guest_random_u32: one Park–Miller step.
pub fn guest_random(state: &mut u64) -> u64 {
    *state = *state * 48271 % 0x7fff_ffff;
    *state
}

/// The generator state vCPU `vcpu` starts from (memstress: `guest_random_seed + vcpu_idx`, in
/// 32 bits).
pub fn initial_state(seed: u32, vcpu: usize) -> u64 {
    u64::from(seed.wrapping_add(vcpu as u32))
}

/// Replays one vCPU's pass over `pages` pages from generator state `state` (updated as the
/// guest updates it), calling `visit(page, written)` for each access in order.
pub fn replay(
    pattern: &AccessPattern,
    pages: u64,
    state: &mut u64,
    mut visit: impl FnMut(u64, bool),
) {
    let wr_fract = pattern.wr_fract.max(1);
    for i in 0..pages {
        let page = if pattern.random {
            guest_random(state) % pages
        } else {
            i
        };
        let written = match pattern.write_percent {
            Some(p) => guest_random(state) % 100 < u64::from(p),
            None => i % wr_fract == 0,
        };
        visit(page, written);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first values of memstress's generator from seed 1 (48271^k mod 2^31-1).
    #[test]
    fn generator_is_park_miller() {
        let mut s = 1;
        assert_eq!(
            [guest_random(&mut s), guest_random(&mut s)],
            [48271, 182_605_794]
        );
    }

    #[test]
    fn replay_writes_the_asked_share() {
        let all = |pattern: AccessPattern| {
            let (mut state, mut writes, mut seen) = (1, 0, vec![0u32; 1000]);
            replay(&pattern, 1000, &mut state, |p, w| {
                seen[p as usize] += 1;
                writes += u64::from(w);
            });
            (writes, seen.iter().filter(|&&c| c == 0).count())
        };
        let percent = |p, random| AccessPattern {
            write_percent: Some(p),
            random,
            wr_fract: 1,
        };
        assert_eq!(all(percent(0, false)), (0, 0));
        assert_eq!(all(percent(100, false)), (1000, 0));
        let (half, unseen) = all(percent(50, true));
        assert!((400..600).contains(&half), "{half}");
        // Drawing 1000 times from 1000 pages leaves about 1000/e of them unvisited.
        assert!((300..440).contains(&unseen), "{unseen}");
        let fract = AccessPattern {
            wr_fract: 3,
            ..AccessPattern::WRITE_ALL
        };
        assert_eq!(all(fract), (334, 0));
    }
}
