// A Rust function in a module, called N times (`names_rust N`): its symbol is mangled (legacy
// or v0 scheme, as rustc is told) and found by its Rust path.
mod shapes {
    #[inline(never)]
    pub fn area(w: u64, h: u64) -> u64 {
        std::hint::black_box(w * h)
    }
}

fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1);
    let mut sum = 0;
    for i in 0..n {
        sum += shapes::area(i, 2);
    }
    println!("{sum}");
}
