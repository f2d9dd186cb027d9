//! The mutation engine: a seeded random generator and the ways an input gets damaged.

/// SplitMix64: a small, fast generator whose whole state is one `u64`, so input number N of a
/// run is reproducible from the run's seed and N alone (see [`Rng::for_input`]). Hand-written
/// rather than the `rand` crate's: the sequence must never change under a dependency update
/// (a saved seed would then replay different inputs), and quality needs are modest.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The generator for input `index` of a run with `seed`.
    pub fn for_input(seed: u64, index: u64) -> Rng {
        let mut r = Rng(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        r.bits();
        r
    }

    /// The next 64 random bits.
    pub fn bits(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.bits() % n as u64) as usize
        }
    }

    /// True once in `n` times.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Integers at the edges where parsers go wrong: zero, one, sign and width boundaries.
const INTERESTING: [u64; 14] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    u64::MAX,
];

/// The same, as text: numbers of text formats at the same boundaries, and a few that do not fit.
const INTERESTING_TEXT: [&str; 12] = [
    "0",
    "-1",
    "1",
    "255",
    "65536",
    "2147483648",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999",
    "0x",
];

/// What a mutation may use besides the input: the other seeds (for splicing) and the
/// target's dictionary (tokens of its format).
pub struct Context<'a> {
    /// Every seed of the target.
    pub seeds: &'a [Vec<u8>],
    /// Tokens of the format, e.g. `uprobe:` or `PacketSize=`.
    pub dictionary: &'a [&'a [u8]],
    /// Inputs are cut to this length.
    pub max_len: usize,
}

/// A new input: a seed with 1 to 8 stacked mutations (fewer more often, so most inputs stay
/// close enough to valid to get past the first checks).
pub fn mutate(rng: &mut Rng, cx: &Context<'_>) -> Vec<u8> {
    let mut data = rng.pick(cx.seeds).clone();
    let rounds = 1 + rng.below(8).min(rng.below(8));
    for _ in 0..rounds {
        mutate_once(rng, cx, &mut data);
    }
    data.truncate(cx.max_len);
    data
}

fn mutate_once(rng: &mut Rng, cx: &Context<'_>, data: &mut Vec<u8>) {
    match rng.below(11) {
        0 => flip_bit(rng, data),
        1 => set_byte(rng, data),
        2 => set_integer(rng, data),
        3 => add_small(rng, data),
        4 => insert_bytes(rng, data),
        5 => delete_range(rng, data),
        6 => copy_range(rng, data),
        7 => splice(rng, cx.seeds, data),
        8 => truncate(rng, data),
        9 => insert_token(rng, cx.dictionary, data),
        _ => replace_number(rng, data),
    }
}

fn flip_bit(rng: &mut Rng, data: &mut [u8]) {
    if !data.is_empty() {
        let at = rng.below(data.len());
        data[at] ^= 1 << rng.below(8);
    }
}

fn set_byte(rng: &mut Rng, data: &mut [u8]) {
    if !data.is_empty() {
        let at = rng.below(data.len());
        data[at] = rng.bits() as u8;
    }
}

/// An interesting integer of 1, 2, 4 or 8 bytes, either byte order, at a random offset:
/// where a binary format keeps a length, an offset or a count, this is what breaks it.
fn set_integer(rng: &mut Rng, data: &mut [u8]) {
    let width = 1 << rng.below(4);
    if data.len() < width {
        return;
    }
    let value = *rng.pick(&INTERESTING);
    let value = if rng.one_in(4) {
        value.wrapping_neg()
    } else {
        value
    };
    let bytes = if rng.one_in(2) {
        value.to_le_bytes()
    } else {
        value.to_be_bytes()
    };
    let bytes = if rng.one_in(2) {
        &bytes[..width]
    } else {
        &bytes[8 - width..]
    };
    let at = rng.below(data.len() - width + 1);
    data[at..at + width].copy_from_slice(bytes);
}

fn add_small(rng: &mut Rng, data: &mut [u8]) {
    if !data.is_empty() {
        let at = rng.below(data.len());
        let delta = rng.below(35) as u8;
        data[at] = data[at].wrapping_add(delta).wrapping_sub(17);
    }
}

fn insert_bytes(rng: &mut Rng, data: &mut Vec<u8>) {
    let at = rng.below(data.len() + 1);
    let n = 1 + rng.below(16);
    let byte = rng.bits() as u8;
    let bytes: Vec<u8> = (0..n)
        .map(|_| {
            if rng.one_in(2) {
                byte
            } else {
                rng.bits() as u8
            }
        })
        .collect();
    data.splice(at..at, bytes);
}

fn delete_range(rng: &mut Rng, data: &mut Vec<u8>) {
    if !data.is_empty() {
        let at = rng.below(data.len());
        let n = 1 + rng.below((data.len() - at).min(64));
        data.drain(at..at + n);
    }
}

/// A piece of the input copied over (or into) another place of it: repeated records.
fn copy_range(rng: &mut Rng, data: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    let from = rng.below(data.len());
    let n = 1 + rng.below((data.len() - from).min(256));
    let piece = data[from..from + n].to_vec();
    let to = rng.below(data.len());
    if rng.one_in(2) {
        data.splice(to..to, piece);
    } else {
        let end = (to + n).min(data.len());
        data.splice(to..end, piece);
    }
}

/// The input's head with another seed's tail.
fn splice(rng: &mut Rng, seeds: &[Vec<u8>], data: &mut Vec<u8>) {
    let other = rng.pick(seeds);
    let cut = rng.below(data.len() + 1);
    let from = rng.below(other.len() + 1);
    data.truncate(cut);
    data.extend_from_slice(&other[from..]);
}

fn truncate(rng: &mut Rng, data: &mut Vec<u8>) {
    let len = rng.below(data.len() + 1);
    data.truncate(len);
}

fn insert_token(rng: &mut Rng, dictionary: &[&[u8]], data: &mut Vec<u8>) {
    if dictionary.is_empty() {
        return insert_bytes(rng, data);
    }
    let token = *rng.pick(dictionary);
    let at = rng.below(data.len() + 1);
    if rng.one_in(2) || data.is_empty() {
        data.splice(at..at, token.iter().copied());
    } else {
        let end = (at + token.len()).min(data.len());
        data.splice(at..end, token.iter().copied());
    }
}

/// A run of ASCII digits replaced by an interesting number: text formats' counts and sizes.
fn replace_number(rng: &mut Rng, data: &mut Vec<u8>) {
    let starts: Vec<usize> = (0..data.len())
        .filter(|&i| data[i].is_ascii_digit() && (i == 0 || !data[i - 1].is_ascii_digit()))
        .collect();
    if starts.is_empty() {
        return set_integer(rng, data);
    }
    let start = *rng.pick(&starts);
    let end = (start..data.len())
        .find(|&i| !data[i].is_ascii_digit())
        .unwrap_or(data.len());
    let number = rng.pick(&INTERESTING_TEXT).as_bytes();
    data.splice(start..end, number.iter().copied());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_input_is_reproducible_from_seed_and_index() {
        let seeds = vec![b"uprobe:/bin/true:main".to_vec()];
        let cx = Context {
            seeds: &seeds,
            dictionary: &[b"%"],
            max_len: 64,
        };
        let a = mutate(&mut Rng::for_input(7, 1234), &cx);
        let b = mutate(&mut Rng::for_input(7, 1234), &cx);
        assert_eq!(a, b);
        let others: Vec<_> = (0..50)
            .map(|i| mutate(&mut Rng::for_input(7, i), &cx))
            .collect();
        assert!(others.iter().any(|o| o != &seeds[0]));
        assert!(others.iter().all(|o| o.len() <= 64));
    }
}
